"""A demo cycle's candidate as a live canary under the judged simulation (issue 27's benchmark).

On a fresh platform (a real `keel up` on the embedded base, its own data dir, the demo corpus indexed
lexically so that no background embedding competes for the 2 cores), `keel simulate --split all` runs
judged traffic the whole time: users whose thumbs, edits and regenerations follow the judge's score of
each answer, and the judge's score itself as `score` feedback. After `--before-s` of the champion alone,
the candidate (a checkpoint folder, e.g. a demo cycle's output) starts as a canary on `--share` of the
conversations with the platform's own decision policy (`cycle.canary`: mSPRT per signal, alpha 0.05), and
a window of at most `--window` s. The benchmark waits for the canary to decide by itself and reports:

- the decision, its reason and the time from start to decision;
- the per-arm figures the decision read (requests; error, thumbs-down, regeneration and edit rates; judge
  score; latency) with the difference's always-valid interval;
- the champion arm's p95 latency during the canary over the p95 of the champion alone before it, on the
  same routes (requests answered by an engine: domain and chat, status 200).

    python bench/canary_demo.py --candidate /var/tmp/keel-flywheel-lift2/checkpoints/cpt-... \\
        --out bench/results/canary_demo.json

Results: the JSON file and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support.launcher import PlatformProcess  # noqa: E402

ENGINE_ROUTES = ("domain", "chat")


def p95(xs: list[float]) -> float | None:
    return round(statistics.quantiles(xs, n=20)[-1], 1) if len(xs) >= 20 else None


def _ts(x: str) -> datetime:
    return datetime.fromisoformat(x.replace("Z", "+00:00"))


def latency_split(rows: list[dict], started: datetime, decided: datetime) -> dict:
    """p95 of engine-answered requests: before the canary (champion alone) and, during it, per arm."""
    ok = [r for r in rows if r.get("status_code") == 200 and r.get("route") in ENGINE_ROUTES]
    before = [r["latency_ms"] for r in ok if _ts(r["created_at"]) < started]
    during = [r for r in ok if started <= _ts(r["created_at"]) < decided]
    champ = [r["latency_ms"] for r in during if r.get("arm") == "champion"]
    cand = [r["latency_ms"] for r in during if r.get("arm") == "candidate"]
    out = {
        "n_before": len(before),
        "n_champion": len(champ),
        "n_candidate": len(cand),
        "p95_before_ms": p95(before),
        "p95_champion_ms": p95(champ),
        "p95_candidate_ms": p95(cand),
        "p50_before_ms": round(statistics.median(before), 1) if before else None,
        "p50_champion_ms": round(statistics.median(champ), 1) if champ else None,
    }
    if out["p95_before_ms"] and out["p95_champion_ms"]:
        out["champion_p95_ratio"] = round(out["p95_champion_ms"] / out["p95_before_ms"], 3)
    return out


def markdown(res: dict) -> str:
    c = res["canary"]
    fig = c.get("figures") or {}
    lines = [
        f"decision: **{c['status']}** ({c.get('reason')}) after {res['time_to_decision_s']:.0f} s; "
        f"requests: candidate {fig.get('n_candidate')}, champion {fig.get('n_champion')}",
        "",
        "| signal | n candidate / champion | candidate | champion | difference (always-valid CI) | p | worse |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for s in fig.get("signals", []):
        n = f"{s['n_candidate']} / {s['n_champion']}"
        if s.get("difference") is None:
            lines.append(f"| {s['name']} | {n} | - | - | not enough data | - | - |")
            continue
        lines.append(
            f"| {s['name']} | {n} | {s['candidate']:.3f} | {s['champion']:.3f} | {s['difference']:+.3f} "
            f"({s['low']:+.3f}..{s['high']:+.3f}) | {s['p']:.2g} | {'yes' if s['worse'] else 'no'} |"
        )
    lat = res["latency"]
    lines += [
        "",
        f"champion p95 during the canary {lat['p95_champion_ms']} ms ({lat['n_champion']} requests) vs alone "
        f"before it {lat['p95_before_ms']} ms ({lat['n_before']}): ratio {lat.get('champion_p95_ratio')}; "
        f"candidate p95 {lat['p95_candidate_ms']} ms ({lat['n_candidate']})",
        f"served afterwards: {res['served_after']}; failures: {res['failures']} of {res['requests']} requests",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candidate", type=Path, required=True, help="The candidate's checkpoint folder.")
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--rate", type=float, default=0.3, help="Simulated requests per second.")
    ap.add_argument("--before-s", type=float, default=300.0, help="Champion alone before the canary.")
    ap.add_argument("--window", type=float, default=1500.0, help="The canary's max_window_s.")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--force", action="store_true", help="Canary a candidate that failed its offline gates.")
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/keel-canary-demo"), help="Data dir.")
    ap.add_argument("--docs", type=Path, default=REPO.parent / "shared/data/domain/tidb-docs-zh/docs")
    ap.add_argument(
        "--model-dir", type=Path, default=Path.home() / ".cache" / "keel-test" / "checkpoints" / "base"
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "canary_demo.json")
    a = ap.parse_args()
    if a.work.exists() and any(a.work.iterdir()):
        print(f"error: {a.work} is not empty: a fresh platform needs an empty data dir", file=sys.stderr)
        return 2
    if not (a.candidate / "manifest.json").exists():
        print(f"error: {a.candidate} is not a checkpoint folder (no manifest.json)", file=sys.stderr)
        return 2
    version = json.loads((a.candidate / "manifest.json").read_text())["version"]
    res: dict = {
        "command": "python bench/canary_demo.py " + " ".join(sys.argv[1:]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "candidate": str(a.candidate),
        "version": version,
        "share": a.share,
        "rate": a.rate,
        "before_s": a.before_s,
        "window_s": a.window,
        "force": a.force,
        "cpus": os.cpu_count(),
    }
    a.work.mkdir(parents=True, exist_ok=True)
    p = PlatformProcess(data_dir=a.work, model_dir=a.model_dir, overrides=["rag.background.dense=false"])
    p.cli("index", str(a.docs), "--lexical-only", timeout=1800)
    p.start(timeout=1200)
    sim = None
    try:
        p.cli("checkpoints", "add", str(a.candidate))
        duration = a.before_s + a.window + 120
        argv = ["simulate", "--split", "all", "--rate", str(a.rate), "--duration", str(duration)]
        sim = subprocess.Popen(
            [*p.cli_argv(), *argv, "--seed", str(a.seed), "--json"],
            env=p.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(a.before_s)
        print(
            f"[{datetime.now(UTC):%H:%M:%S}] canary {version} on {a.share:.0%}", file=sys.stderr, flush=True
        )
        t0 = time.monotonic()
        body = {"version": version, "share": a.share, "max_window_s": a.window, "force": a.force}
        r = p.admin("POST", "/admin/canary", json=body, timeout=900)
        if r.status_code >= 300:
            print(f"error: canary refused: {r.status_code} {r.text}", file=sys.stderr)
            return 1
        res["spare_start_s"] = round(time.monotonic() - t0, 1)
        while True:
            time.sleep(10)
            st = p.admin("GET", "/admin/canary").json()
            c = st["canary"]
            if c["status"] != "running":
                break
            fig = c.get("figures") or {}
            print(
                f"  {time.monotonic() - t0:5.0f} s: candidate {fig.get('n_candidate')}, champion "
                f"{fig.get('n_champion')}",
                file=sys.stderr,
                flush=True,
            )
        res["time_to_decision_s"] = round(time.monotonic() - t0, 1)
        res["canary"] = c
        # a promotion runs the verified swap after the decision: wait for it to land, or for the canary row
        # to say it was refused (a candidate forced into the canary is not forced through the promotion)
        deadline = time.monotonic() + 900
        while c["status"] == "promoted" and time.monotonic() < deadline:
            swaps = p.admin("GET", "/admin/swaps", params={"limit": 1}).json()
            if swaps and swaps[0]["to_version"] == version and swaps[0]["status"] != "running":
                res["swap"] = swaps[0]
                break
            c = p.admin("GET", "/admin/canary").json()["canary"]
            time.sleep(2)
        res["canary_final"] = {k: c.get(k) for k in ("status", "reason", "finished_at")}
        res["served_after"] = p.admin("GET", "/health").json()["checkpoint_version"]
        sim.send_signal(signal.SIGTERM)  # the rest of the simulation is not needed
        sim.wait(60)
        time.sleep(5)  # the request log's writer flushes in batches
        rows = p.admin("GET", "/admin/requests", params={"limit": 1000}).json()
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
        p.stop()
    res["requests"] = len(rows)
    res["failures"] = sum(r.get("status_code") != 200 for r in rows)
    started, decided = (
        _ts(c["started_at"]),
        _ts(c["finished_at"]) if c.get("finished_at") else datetime.now(UTC),
    )
    res["latency"] = latency_split(rows, started, decided)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
