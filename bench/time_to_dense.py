"""Time to a full dense index after `keel up` (issue 29, item 2): how long a fresh platform answers from
lexical retrieval only, whether the ETA it shows matched what happened, and (with `--rate`) what indexing
costs the users it serves meanwhile.

Run (JSON on stdout and in --out):
    python bench/time_to_dense.py --keep /var/tmp/keel-dense-idle        # idle: nothing but the platform
    python bench/time_to_dense.py --rate 0.5 --limit-s 1500 \
        --control-index /var/tmp/keel-dense-idle/rag --out bench/results/time_to_dense_sim.json

Indexing phase: a real `keel up` on a fresh data dir with the demo corpus as `rag.corpus_paths` (what a
new user gets), polled through `GET /admin/index` every `--poll-s`. The clock starts when `keel up` is
launched; "dense" is the first poll where no chunk lacks a vector (state idle, nothing pending). If that
takes longer than `--limit-s` (or the run gets SIGTERM/SIGINT), the phase stops there and reports the
mean embedding rate so far and the time to dense it projects.

ETA check: at each poll during embedding the platform's own `eta_s` predicts the finish; the error is
|predicted - actual| / actual remaining time, at 10/25/50/75/90% of the chunks.

With `--rate R`, `keel simulate --rate R` (the judged simulation, seen questions, seed 29) runs through
the indexing phase. With `--control-index` the same simulation then runs for `--control-s` on a second
fresh platform serving a complete index (nothing to embed). Latencies come from each phase's request-log
rows: p50/p95 per route and the ratio indexing / control. The phases run one after the other in the same
command on the same machine; they differ in what retrieval an answer gets (lexical only while indexing,
hybrid in the control), which the doc states beside the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from keel.store import DB_FILE  # noqa: E402

from bench.support.launcher import PlatformProcess, copy_index  # noqa: E402

DOCS = REPO.parent / "shared" / "data" / "domain" / "tidb-docs-zh" / "docs"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def p95(xs: list[float]) -> float | None:
    return round(statistics.quantiles(xs, n=20)[-1], 1) if len(xs) >= 20 else None


def eta_errors(polls: list[dict], t_dense: float) -> dict:
    """At each share of chunks embedded: how far the platform's ETA was from what happened."""
    out = {}
    for share in (0.10, 0.25, 0.50, 0.75, 0.90):
        for p in polls:
            total = p.get("chunks_total") or 0
            if total and p.get("eta_s") is not None and p["chunks_embedded"] >= share * total:
                actual = t_dense - p["t"]
                if actual > 0:
                    out[f"{share:.0%}"] = {
                        "at_s": round(p["t"], 1),
                        "eta_s": round(p["eta_s"], 1),
                        "actual_s": round(actual, 1),
                        "error": round(abs(p["eta_s"] - actual) / actual, 3),
                    }
                break
    return out


def request_latencies(data_dir: Path, t0_wall: float, until_s: float | None = None) -> dict[str, list[float]]:
    """Chat requests' latencies per route (and "all") from the request log, created before `until_s`
    seconds after `t0_wall` (None: all); failures under "failed"."""
    from keel.store.db import Database
    from keel.store.requestlog import select_requests

    db = Database(data_dir / DB_FILE)
    try:
        rows = select_requests(
            db,
            "endpoint = '/v1/chat/completions'",
            columns=["created_at", "latency_ms", "route", "status_code", "error"],
            order="created_at",
        )
    finally:
        db.close()
    out: dict[str, list[float]] = {"all": [], "failed": [], "cut": []}
    for r in rows:
        t = datetime.fromisoformat(r["created_at"]).timestamp() - t0_wall
        if until_s is not None and t >= until_s:
            continue
        if r["status_code"] == 499:  # the simulation stopped (by this script) while they were answered
            out["cut"].append(t)
            continue
        if r["error"] or (r["status_code"] or 200) >= 500:
            out["failed"].append(t)
            continue
        for key in ("all", r["route"] or "?"):
            out.setdefault(key, []).append(r["latency_ms"])
    return out


def compare(indexing: dict[str, list[float]], control: dict[str, list[float]]) -> dict:
    table = {}
    for key in sorted((set(indexing) | set(control)) - {"failed", "cut"}):
        a, b = indexing.get(key, []), control.get(key, [])
        pa, pb = p95(a), p95(b)
        table[key] = {
            "n_indexing": len(a),
            "n_control": len(b),
            "p50_indexing_ms": round(statistics.median(a), 1) if a else None,
            "p50_control_ms": round(statistics.median(b), 1) if b else None,
            "p95_indexing_ms": pa,
            "p95_control_ms": pb,
            "p95_ratio": round(pa / pb, 2) if pa and pb else None,
        }
    return {
        "failures_indexing": len(indexing.get("failed", [])),
        "failures_control": len(control.get("failed", [])),
        "cut_by_the_stop": [len(indexing.get("cut", [])), len(control.get("cut", []))],
        "per_route": table,
    }


def simulate(p: PlatformProcess, rate: float, seconds: float, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*p.cli_argv(), "simulate", "--rate", str(rate), "--duration", str(seconds), "--seed", "29"],
        env=p.env(),
        stdout=open(log, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )


def stop(sim: subprocess.Popen | None) -> None:
    if sim is not None and sim.poll() is None:
        sim.terminate()
        try:
            sim.wait(60)
        except subprocess.TimeoutExpired:
            sim.kill()


def indexing_phase(a: argparse.Namespace, data: Path) -> dict:
    """A fresh `keel up` indexing the demo corpus (and `keel simulate` when --rate), polled until dense,
    --limit-s, or SIGTERM/SIGINT (the figures so far are kept)."""
    p = PlatformProcess(
        data_dir=data, model_dir=a.model_dir, overrides=[f"rag.corpus_paths=[{DOCS}]", *a.sets]
    )
    polls: list[dict] = []
    sim = None
    stopped = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.append(True))
    t0_wall, t0 = time.time(), time.monotonic()
    p.start(timeout=900)
    t_healthy = time.monotonic() - t0
    print(f"healthy after {t_healthy:.0f} s; load {load()}", file=sys.stderr, flush=True)
    t_dense = None
    try:
        if a.rate:
            sim = simulate(p, a.rate, a.limit_s, data / "simulate.log")
        while time.monotonic() - t0 < a.limit_s and not stopped:
            s = p.admin("GET", "/admin/index", timeout=30).json()
            s["t"] = time.monotonic() - t0
            s["load"] = load()
            polls.append(s)
            print(
                f"{s['t']:7.0f} s {s['state']:9} {s['chunks_embedded']}/{s['chunks_total']} "
                f"rate {s['rate_chunks_s']} eta {s['eta_s']} load {s['load']}",
                file=sys.stderr,
                flush=True,
            )
            complete = s["chunks_total"] and s["chunks_embedded"] >= s["chunks_total"]
            if complete and s["state"] == "idle" and not s["dense_pending"]:
                t_dense = s["t"]
                break
            time.sleep(a.poll_s)
        t_end = time.monotonic() - t0
    finally:
        stop(sim)
        p.stop()
    first = next((x for x in polls if x["state"] == "embedding"), None)
    last = polls[-1] if polls else {}
    out = {
        "healthy_s": round(t_healthy, 1),
        "embedding_started_s": round(first["t"], 1) if first else None,
        "dense_s": round(t_dense, 1) if t_dense is not None else None,
        "stopped_at_s": None if t_dense is not None else round(t_end, 1),
        "chunks": last.get("chunks_total"),
        "embedded": last.get("chunks_embedded"),
        "load_first_last": [polls[0]["load"], last["load"]] if polls else None,
        "polls": polls,
    }
    if first and last.get("chunks_embedded"):
        span = (t_dense if t_dense is not None else last["t"]) - first["t"]
        rate = last["chunks_embedded"] / span if span > 0 else None
        out["mean_rate_chunks_s"] = round(rate, 2) if rate else None
        if t_dense is None and rate:
            # not dense within the limit: when it would be at the rate measured so far
            out["projected_dense_s"] = round(first["t"] + last["chunks_total"] / rate, 1)
            out["platform_eta_s_at_stop"] = last.get("eta_s")
    if t_dense is not None:
        out["eta"] = eta_errors(polls, t_dense)
    if a.rate:
        out["latencies"] = request_latencies(data, t0_wall, t_dense)
    return out


def control_phase(a: argparse.Namespace, data: Path) -> dict[str, list[float]]:
    """The same simulation on a platform that serves a complete index (nothing to embed)."""
    p = PlatformProcess(
        data_dir=data, model_dir=a.model_dir, overrides=[*copy_index(a.control_index, data), *a.sets]
    )
    p.start(timeout=900)
    p.wait_dense()
    t0_wall = time.time()
    sim = simulate(p, a.rate, a.control_s, data / "simulate.log")
    try:
        sim.wait(a.control_s + 300)
    finally:
        stop(sim)
        p.stop()
    return request_latencies(data, t0_wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=0.0, help="keel simulate's rate meanwhile (0: idle).")
    ap.add_argument("--poll-s", type=float, default=10.0)
    ap.add_argument(
        "--limit-s", type=float, default=3 * 3600.0, help="Stop indexing's clock after this long."
    )
    ap.add_argument(
        "--control-index",
        type=Path,
        default=None,
        help="With --rate: a complete rag folder of the demo corpus; the control phase serves it under the "
        "same simulation for --control-s (the p95 without indexing).",
    )
    ap.add_argument("--control-s", type=float, default=600.0)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="keel --set key=value.")
    ap.add_argument(
        "--model-dir", type=Path, default=Path.home() / ".cache" / "keel-test" / "checkpoints" / "base"
    )
    ap.add_argument("--keep", type=Path, default=None, help="Data dir to keep (the index for bench/rag.py).")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "time_to_dense.json")
    a = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="keel-dense-")
    res: dict = {"command": "python bench/time_to_dense.py " + " ".join(sys.argv[1:]), "cpu": os.cpu_count()}
    res["indexing"] = indexing_phase(a, a.keep or Path(tmp.name) / "data")
    if a.rate and a.control_index:
        control = control_phase(a, Path(tmp.name) / "control")
        res["latency"] = compare(res["indexing"].pop("latencies"), control)
    elif a.rate:
        res["indexing"]["latencies"] = {k: len(v) for k, v in res["indexing"]["latencies"].items()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1, default=str))
    res["indexing"].pop("polls")
    print(json.dumps(res, indent=1, default=str))
    tmp.cleanup()


if __name__ == "__main__":
    main()
