"""Domain bits/byte of a cycle on the FAQ's dev and test halves (issue 28, item 8).

The gate scores all 246 held-out FAQ answers. The demo profile was tuned on that whole set, so its
reported figure was chosen on the data it reports. `training.eval.heldout.faq_half` splits the answers by
a fixed hash of their id: tuning reads the dev half, figures are reported on the test half. This script
takes a cycle's two eval JSONs (the served checkpoint and the candidate, the same items) and reports the
change in domain bits/byte on the whole set and on each half, with paired-bootstrap 95% intervals (the
gate's own arithmetic).

    python bench/faq_halves.py --cycle bench/results/flywheel_lift.json     # every cycle of a lift run
    python bench/faq_halves.py BASELINE_EVAL.json CANDIDATE_EVAL.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.eval.gates import GatePolicy, delta  # noqa: E402
from training.eval.heldout import faq_half  # noqa: E402


def item_id(doc_id: str) -> str:
    """The FAQ item's own id (``faq/12``) from an eval JSON's document id (``faq_answers/faq/12``)."""
    part, _, rest = doc_id.partition("/")
    return rest if part in ("faq_answers", "faq_docs") else doc_id


def half(ev: dict, which: str | None) -> dict:
    """``ev`` with its domain part cut to one half of the FAQ answers (None: the whole set)."""
    if which is None:
        return ev
    out = copy.copy(ev)
    docs = [d for d in ev["domain"]["docs"] if faq_half(item_id(d["id"])) == which]
    out["domain"] = {**ev["domain"], "docs": docs}
    return out


def halves(base: dict, cand: dict) -> dict[str, dict]:
    policy = GatePolicy()  # 95%, 2,000 resamples, seed 0: the gate's defaults
    return {
        name: delta(half(cand, which), half(base, which), "domain.bpb", policy)
        for name, which in (("whole", None), ("dev", "dev"), ("test", "test"))
    }


def table(rows: dict[str, dict]) -> str:
    lines = [
        "| FAQ answers | n | bits/byte before | after | change | 95% CI |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, d in rows.items():
        lines.append(
            f"| {name} | {d['n']} | {d['baseline']:.4f} | {d['candidate']:.4f} | {d['delta']:+.1f}% | "
            f"{d['ci'][0]:+.1f}..{d['ci'][1]:+.1f}% |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("evals", nargs="*", type=Path, help="BASELINE_EVAL.json CANDIDATE_EVAL.json")
    ap.add_argument(
        "--cycle", type=Path, help="A bench result with cycles (flywheel_lift.json, cycle-*.json)."
    )
    a = ap.parse_args()
    pairs: list[tuple[str, Path, Path]] = []
    if a.cycle:
        res = json.loads(a.cycle.read_text())
        for i, c in enumerate(res.get("cycles", [res])):
            ev = c.get("evals") or {}
            if ev.get("baseline") and ev.get("candidate"):
                pairs.append(
                    (f"cycle {i + 1} ({c.get('cycle_id')})", Path(ev["baseline"]), Path(ev["candidate"]))
                )
    elif len(a.evals) == 2:
        pairs.append(("", a.evals[0], a.evals[1]))
    else:
        ap.error("give two eval JSONs or --cycle")
    if not pairs:
        print("error: no cycle with both eval JSONs in that file", file=sys.stderr)
        return 2
    for name, b, c in pairs:
        base, cand = (json.loads(p.read_text()) for p in (b, c))
        if "domain" not in base or "domain" not in cand:
            print(f"{name}: no domain part in the evals", file=sys.stderr)
            continue
        print(f"{name}\n{base['checkpoint']['version']} → {cand['checkpoint']['version']}\n")
        print(table(halves(base, cand)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
