"""Feedback-lift benchmark (issue 26, item 5): does the served model get better from use, by itself?

On a fresh platform (a real `keel up` on the embedded base, its own data dir, the demo corpus indexed
lexically so that no background embedding competes for the 2 cores):

    sim 0 → cycle 1 → sim 1 → cycle 2 → sim 2

Each `sim` is the same judged simulation (`keel simulate --split all --seed S`: the same questions in the
same order, judged by chrF against their references, feedback drawn by the documented user model of
platform/keel/simulate/users.py). Seen questions leave feedback, which the next cycle mines; held-out
questions (other questions and paraphrases of seen ones) are judged only and never fed back. Each cycle is
`keel cycle run --profile demo` (the same path as the nightly job); cycle 2 has no new documents, so its
CPT is skipped and it is decided by what SFT/DPO/KTO trained on sim 1's traffic.

Reported per sim, on seen, held-out and all judged first answers, with 95% intervals: mean judge score,
thumbs-down rate, edit rate; per step between sims, paired by arrival (the same question at the same
place in the sequence): the change in mean judge score and the relative change in the thumbs-down rate,
with paired-bootstrap 95% intervals; per cycle: wall time, stages trained or skipped and why, the gate
decision, and before → after of domain bits/byte, general bits/byte per language, MMLU/CMMLU and the
answers suite.

    python bench/flywheel_lift.py                       # ~2 h on 2 cores
    python bench/flywheel_lift.py --cycles 1            # sim 0 → cycle 1 → sim 1
    python bench/flywheel_lift.py --resume              # continue after the last finished phase

Results: bench/results/flywheel_lift.json (written after every phase) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cycle import markdown as cycle_markdown  # noqa: E402
from bench.cycle import outcome  # noqa: E402
from bench.support.launcher import PlatformProcess  # noqa: E402

SPLITS = ("seen", "held_out", "all")


def first_answers(sim: dict, split: str) -> dict[int, dict]:
    return {
        r["arrival"]: r
        for r in sim["judged"]
        if not r["regenerated"] and (split == "all" or r["split"] == split)
    }


def _ci(xs: list[float]) -> list[float] | None:
    if len(xs) < 2:
        return None
    xs = sorted(xs)
    return [round(xs[int(0.025 * (len(xs) - 1))], 4), round(xs[int(0.975 * (len(xs) - 1))], 4)]


def paired(before: dict, after: dict, split: str, n_boot: int = 4000) -> dict:
    """The same arrivals in both sims: mean score change and relative thumbs-down change, bootstrapped."""
    b, a = first_answers(before, split), first_answers(after, split)
    common = sorted(b.keys() & a.keys())
    n = len(common)
    if not n:
        return {"n": 0}
    ds = [a[k]["score"] - b[k]["score"] for k in common]
    down_b = [b[k]["thumb"] == "down" for k in common]
    down_a = [a[k]["thumb"] == "down" for k in common]

    def rel(idx: list[int]) -> float | None:
        db = sum(down_b[i] for i in idx)
        return sum(down_a[i] for i in idx) / db - 1 if db else None

    rng = random.Random(0)  # a fixed resampling: the interval is a property of the data, not of the run
    boots_d, boots_r = [], []
    for _ in range(n_boot):
        idx = [rng.randrange(n) for _ in range(n)]
        boots_d.append(statistics.fmean(ds[i] for i in idx))
        r = rel(idx)
        if r is not None:
            boots_r.append(r)
    full = rel(list(range(n)))
    return {
        "n": n,
        "score_before": round(statistics.fmean(b[k]["score"] for k in common), 4),
        "score_after": round(statistics.fmean(a[k]["score"] for k in common), 4),
        "score_change": round(statistics.fmean(ds), 4),
        "score_change_ci": _ci(boots_d),
        "thumbs_down_before": round(sum(down_b) / n, 4),
        "thumbs_down_after": round(sum(down_a) / n, 4),
        "thumbs_down_rel_change": round(full, 4) if full is not None else None,
        "thumbs_down_rel_change_ci": _ci(boots_r),
    }


def cycle_summary(cycle: dict, wall: float) -> dict:
    out = outcome(cycle)
    steps = {s["name"]: s for s in cycle["steps"]}
    ev = steps.get("evaluate", {}).get("output", {})
    if "baseline" in ev and "candidate" in ev:
        base = json.loads(Path(ev["baseline"]["eval"]).read_text())
        cand = json.loads(Path(ev["candidate"]["eval"]).read_text())
        b, c = (e.get("answers", {}).get("summary", {}).get("score") for e in (base, cand))
        out["evals"] = {"baseline": ev["baseline"]["eval"], "candidate": ev["candidate"]["eval"]}
        out["metrics"]["answers_score"] = {
            "before": b,
            "after": c,
            "change_pct": (c / b - 1) * 100 if b and c is not None else None,
        }
    return {
        "cycle_id": cycle["cycle_id"],
        "status": cycle["status"],
        "outcome": cycle.get("outcome"),
        "error": cycle.get("error"),
        "wall_s": round(wall, 1),
        **out,
    }


def sim_row(sim: dict) -> dict:
    keep = ("requests", "seconds", "statuses", "feedback", "latency_p50_ms", "latency_p95_ms", "errors")
    return {k: sim.get(k) for k in keep} | {"judge": sim.get("judge")}


def _f(x: float | None, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def markdown(res: dict) -> str:
    lines = [f"# feedback lift, {res['started_at']} ({res['command']})", ""]
    lines += [
        "| sim | split | answers | judge score (95% CI) | thumbs down (95% CI) | edits | other language |",
        "|---|---|---:|---|---|---:|---:|",
    ]
    for i, s in enumerate(res["sims"]):
        for split in SPLITS:
            j = (s["judge"] or {}).get(split)
            if not j:
                continue
            ci, td = j["score_ci"], j["thumbs_down_ci"] or [None, None]
            lines.append(
                f"| {i} | {split} | {j['n']} | {_f(j['score'])} ({_f(ci[0])}-{_f(ci[1])}) | "
                f"{_pct(j['thumbs_down_rate'])} ({_pct(td[0])}-{_pct(td[1])}) | {_pct(j['edit_rate'])} | "
                f"{j['other_language']} |"
            )
    if res.get("changes"):
        lines += [
            "",
            "| change | split | paired answers | judge score Δ (95% CI) | thumbs down before → after | "
            "relative (95% CI) |",
            "|---|---|---:|---|---|---|",
        ]
        for name, by in res["changes"].items():
            for split in SPLITS:
                p = by.get(split) or {}
                if not p.get("n"):
                    continue
                ci = p["score_change_ci"] or [None, None]
                rci = p["thumbs_down_rel_change_ci"] or [None, None]
                lines.append(
                    f"| {name} | {split} | {p['n']} | {p['score_change']:+.3f} ({_f(ci[0])}..{_f(ci[1])}) | "
                    f"{_pct(p['thumbs_down_before'])} → {_pct(p['thumbs_down_after'])} | "
                    f"{_pct(p['thumbs_down_rel_change'])} ({_pct(rci[0])}..{_pct(rci[1])}) |"
                )
    for i, c in enumerate(res["cycles"], 1):  # each cycle as bench/cycle.py prints one
        lines += ["", f"**cycle {i}**", cycle_markdown(c)]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=2, choices=(1, 2))
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--rate", type=float, default=0.3, help="Simulated requests per second.")
    ap.add_argument("--sim-s", type=float, default=420.0, help="Seconds of each judged simulation.")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/keel-flywheel-lift"), help="Data dir.")
    ap.add_argument("--docs", type=Path, default=REPO.parent / "shared/data/domain/tidb-docs-zh/docs")
    ap.add_argument(
        "--model-dir", type=Path, default=Path.home() / ".cache" / "keel-test" / "checkpoints" / "base"
    )
    ap.add_argument("--resume", action="store_true", help="Continue after the last finished phase.")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "flywheel_lift.json")
    a = ap.parse_args()

    if a.resume and a.out.exists():
        res = json.loads(a.out.read_text())
    else:
        if a.work.exists() and any(a.work.iterdir()):
            print(f"error: {a.work} is not empty: a fresh platform needs an empty data dir", file=sys.stderr)
            return 2
        res = {
            "command": "python bench/flywheel_lift.py " + " ".join(sys.argv[1:]),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "rate": a.rate,
            "sim_s": a.sim_s,
            "seed": a.seed,
            "profile": a.profile,
            "cpus": os.cpu_count(),
            "sims": [],
            "cycles": [],
            "sims_judged": [],
            "phases": [],
        }

    def save() -> None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str))

    p = PlatformProcess(
        data_dir=a.work,
        model_dir=a.model_dir,
        # the index is built below, lexically: a background dense pass would take both cores for ~1 h
        overrides=["rag.background.dense=false"],
    )
    if not res["phases"]:
        t = time.monotonic()
        a.work.mkdir(parents=True, exist_ok=True)
        p.cli("index", str(a.docs), "--lexical-only", timeout=1800)
        res["index_s"] = round(time.monotonic() - t, 1)
    p.start(timeout=1200)
    plan = ["sim"] + ["cycle", "sim"] * a.cycles
    try:
        for i, kind in enumerate(plan):
            if i < len(res["phases"]):
                continue
            t0, load0 = time.monotonic(), os.getloadavg()
            print(f"[{datetime.now(UTC):%H:%M:%S}] phase {i}: {kind}", file=sys.stderr, flush=True)
            if kind == "sim":
                argv = ["simulate", "--split", "all", "--rate", str(a.rate), "--duration", str(a.sim_s)]
                out = p.cli(*argv, "--seed", str(a.seed), "--json", timeout=a.sim_s + 1800).stdout
                sim = json.loads(out)
                res["sims"].append(sim_row(sim))
                res["sims_judged"].append(sim["judged"])
                k = len(res["sims"]) - 1
                if k:
                    res.setdefault("changes", {})
                    for name, j in ((f"sim {k - 1} → {k}", k - 1), (f"sim 0 → {k}", 0)):
                        if name in res["changes"]:
                            continue
                        before = {"judged": res["sims_judged"][j]}
                        res["changes"][name] = {s: paired(before, sim, s) for s in SPLITS}
            else:
                cmd = ["cycle", "run", "--profile", a.profile, "--json"]
                proc = p.cli(*cmd, check=False, timeout=3 * 3600)
                if not proc.stdout.strip().startswith("{"):
                    print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                    return 1
                res["cycles"].append(cycle_summary(json.loads(proc.stdout), time.monotonic() - t0))
            res["phases"].append(
                {
                    "kind": kind,
                    "seconds": round(time.monotonic() - t0, 1),
                    "load_before": load0,
                    "load_after": os.getloadavg(),
                }
            )
            save()
            print(markdown(res), file=sys.stderr, flush=True)
    finally:
        p.stop()
    res["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    save()
    print(markdown(res))
    print(f"\nsaved {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
