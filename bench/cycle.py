"""Learning-outcome benchmark: one flywheel cycle, its wall time per step, and what it did to the model.

Run (after `keel up` and `keel simulate`, or with no platform: the cycle then runs in this CLI):
    python bench/cycle.py --profile demo
    python bench/cycle.py --profile overtrained --stages cpt        # must be rejected by the gates

It runs `keel cycle run --profile P --json` (the same code path as the API and the scheduler), then reads
the two eval JSONs the cycle's evaluate step wrote (the serving checkpoint vs the candidate, same items)
and prints per step the wall time, and before → after: domain bits/byte (held-out FAQ answers), general
bits/byte per language (en, zh), MMLU/CMMLU accuracy, and the gate decision with its reasons.
JSON saved to bench/results/cycle-<profile>.json, with the machine's load before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bpb(ev: dict, part: str, sub: str | None = None) -> float | None:
    p = ev.get(part)
    if not p:
        return None
    s = p["parts"].get(sub) if sub else p["summary"]
    return s.get("bpb") if s else None


def _acc(ev: dict, bench: str) -> float | None:
    b = ev.get(bench)
    return b["summary"]["overall"]["acc"] if b else None


def outcome(cycle: dict) -> dict:
    steps = {s["name"]: s for s in cycle["steps"]}
    ev = steps.get("evaluate", {}).get("output", {})
    out: dict = {"metrics": {}}
    if "baseline" in ev and "candidate" in ev:
        base = json.loads(Path(ev["baseline"]["eval"]).read_text())
        cand = json.loads(Path(ev["candidate"]["eval"]).read_text())
        for name, fn in (
            ("domain_bpb", lambda e: _bpb(e, "domain")),
            ("general_en_bpb", lambda e: _bpb(e, "general", "en")),
            ("general_zh_bpb", lambda e: _bpb(e, "general", "zh")),
            ("general_bpb", lambda e: _bpb(e, "general")),
            ("mmlu_acc", lambda e: _acc(e, "mmlu")),
            ("cmmlu_acc", lambda e: _acc(e, "cmmlu")),
        ):
            b, c = fn(base), fn(cand)
            rel = (c / b - 1) * 100 if b and c is not None else None
            out["metrics"][name] = {"before": b, "after": c, "change_pct": rel}
    gate = steps.get("gate", {}).get("output", {})
    out["gate"] = {
        "passed": gate.get("passed"),
        "reasons": gate.get("reasons", []),
        "gates": gate.get("gates", []),
    }
    out["steps"] = [
        {"name": s["name"], "status": s["status"], "seconds": s["seconds"], "reason": s.get("reason")}
        for s in cycle["steps"]
    ]
    out["decision"] = (steps.get("promote", {}).get("output") or {}).get("decision")
    return out


def markdown(res: dict) -> str:
    lines = [f"cycle {res['cycle_id']}: {res['status']} ({res['outcome']}), {res['wall_s']:.0f} s wall", ""]
    lines += ["| step | status | s | note |", "|---|---|---:|---|"]
    for s in res["steps"]:
        secs = f"{s['seconds']:.0f}" if s["seconds"] is not None else ""
        lines.append(f"| {s['name']} | {s['status']} | {secs} | {s.get('reason') or ''} |")
    if res["metrics"]:
        lines += ["", "| metric | before | after | change |", "|---|---:|---:|---:|"]
        for k, m in res["metrics"].items():
            if m["before"] is None:
                continue
            ch = f"{m['change_pct']:+.1f}%" if m["change_pct"] is not None else ""
            lines.append(f"| {k} | {m['before']:.4f} | {m['after']:.4f} | {ch} |")
    g = res["gate"]
    if g["passed"] is not None:
        lines += ["", f"gate: {'PASS' if g['passed'] else 'FAIL'}"]
        lines += [f"- {'pass' if x['passed'] else 'FAIL'} {x['gate']}: {x['reason']}" for x in g["gates"]]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--stages", default=None)
    ap.add_argument("--set", action="append", default=[], help="keel --set overrides (section.key=value)")
    ap.add_argument("--resume", default=None, help="Continue this cycle (interrupted/failed) instead.")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    keel = [sys.executable, "-m", "keel", *[x for s in a.set for x in ("--set", s)], "cycle"]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    if a.resume:
        subprocess.run([*keel, "resume", a.resume], cwd=REPO, capture_output=True, text=True)
        proc = subprocess.run([*keel, "show", a.resume, "--json"], cwd=REPO, capture_output=True, text=True)
    else:
        argv = [*keel, "run", "--profile", a.profile, "--json", *(["--stages", a.stages] if a.stages else [])]
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if not proc.stdout.strip().startswith("{"):
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        return 1
    cycle = json.loads(proc.stdout)
    res = {
        "cycle_id": cycle["cycle_id"],
        "status": cycle["status"],
        "outcome": cycle.get("outcome"),
        "error": cycle.get("error"),
        "profile": a.profile,
        "wall_s": wall,
        "report": cycle.get("report"),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        **outcome(cycle),
    }
    out = a.out or REPO / "bench" / "results" / f"cycle-{Path(a.profile).stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    print(markdown(res))
    print(f"\nsaved {out}")
    return 0 if cycle["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
