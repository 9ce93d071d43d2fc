"""Time to a full dense index after `keel up` (issue 29, item 2): how long a fresh platform answers from
lexical retrieval only, whether the ETA it shows matched what happened, and (with `--rate`) what indexing
costs the users it serves meanwhile.

Run (Markdown-ready JSON on stdout and in bench/results/time_to_dense*.json):
    python bench/time_to_dense.py                       # idle: nothing but the platform
    python bench/time_to_dense.py --rate 0.5 --after-s 900 --out bench/results/time_to_dense_sim.json

A real `keel up` on a fresh data dir with the demo corpus as `rag.corpus_paths` (what a new user gets),
polled through `GET /admin/index` every `--poll-s`. The clock starts when `keel up` is launched; "dense"
is the first poll where no chunk lacks a vector (state idle, dense_pending false, embedded = total).

ETA check: at each poll during embedding the platform's own `eta_s` predicts the finish; the error is
|predicted - actual| / actual remaining time, reported at 10/25/50/75/90% of the chunks.

With `--rate R`, `keel simulate --rate R` (the judged simulation, seen questions) runs from the moment the
platform is healthy until `--after-s` seconds after the index is dense. Latencies come from the request
log's rows (after the platform stopped): requests created while the index was still embedding against
those created after it was dense, p95 of each and their ratio, per route. Both phases run the same
simulation on the same platform in one run; they differ in the retrieval an answer gets (lexical only
before, hybrid after), which the doc states beside the figure.
"""

from __future__ import annotations

import argparse
import json
import os
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

from bench.support.launcher import PlatformProcess  # noqa: E402

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


def latencies(data_dir: Path, t0_wall: float, t_dense: float) -> dict:
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
    phases: dict[str, dict[str, list[float]]] = {"indexing": {}, "dense": {}}
    failures = 0
    for r in rows:
        if r["error"] or (r["status_code"] or 200) >= 500:
            failures += 1
            continue
        t = datetime.fromisoformat(r["created_at"]).timestamp() - t0_wall
        ph = phases["indexing" if t < t_dense else "dense"]
        for key in ("all", r["route"] or "?"):
            ph.setdefault(key, []).append(r["latency_ms"])
    table = {}
    for key in sorted(set(phases["indexing"]) | set(phases["dense"])):
        a, b = phases["indexing"].get(key, []), phases["dense"].get(key, [])
        pa, pb = p95(a), p95(b)
        table[key] = {
            "n_indexing": len(a),
            "n_dense": len(b),
            "p50_indexing_ms": round(statistics.median(a), 1) if a else None,
            "p50_dense_ms": round(statistics.median(b), 1) if b else None,
            "p95_indexing_ms": pa,
            "p95_dense_ms": pb,
            "p95_ratio": round(pa / pb, 2) if pa and pb else None,
        }
    return {"rows": len(rows), "failures": failures, "per_route": table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=0.0, help="keel simulate's rate meanwhile (0: idle).")
    ap.add_argument("--after-s", type=float, default=600.0, help="Simulation after the index is dense.")
    ap.add_argument("--poll-s", type=float, default=10.0)
    ap.add_argument("--limit-s", type=float, default=3 * 3600.0, help="Give up after this long.")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="keel --set key=value.")
    ap.add_argument(
        "--model-dir", type=Path, default=Path.home() / ".cache" / "keel-test" / "checkpoints" / "base"
    )
    ap.add_argument("--keep", type=Path, default=None, help="Data dir to keep (the index for bench/rag.py).")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "time_to_dense.json")
    a = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="keel-dense-")
    data = a.keep or Path(tmp.name) / "data"
    p = PlatformProcess(
        data_dir=data, model_dir=a.model_dir, overrides=[f"rag.corpus_paths=[{DOCS}]", *a.sets]
    )
    polls: list[dict] = []
    sim = None
    t0_wall, t0 = time.time(), time.monotonic()
    p.start(timeout=900)
    t_healthy = time.monotonic() - t0
    print(f"healthy after {t_healthy:.0f} s; load {load()}", file=sys.stderr, flush=True)
    try:
        if a.rate:
            sim_log = open(data / "simulate.log", "w")  # noqa: SIM115
            sim = subprocess.Popen(
                [
                    *p.cli_argv(),
                    "simulate",
                    "--rate",
                    str(a.rate),
                    "--duration",
                    str(a.limit_s),
                    "--seed",
                    "29",
                ],
                env=p.env(),
                stdout=sim_log,
                stderr=subprocess.STDOUT,
            )
        t_dense = None
        while time.monotonic() - t0 < a.limit_s:
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
        if sim is not None and t_dense is not None:
            time.sleep(a.after_s)
    finally:
        if sim is not None:
            sim.terminate()
            try:
                sim.wait(60)
            except subprocess.TimeoutExpired:
                sim.kill()
        p.stop()

    first = next((x for x in polls if x["state"] == "embedding"), None)
    res = {
        "command": "python bench/time_to_dense.py " + " ".join(sys.argv[1:]),
        "rate": a.rate,
        "sets": a.sets,
        "healthy_s": round(t_healthy, 1),
        "embedding_started_s": round(first["t"], 1) if first else None,
        "dense_s": round(t_dense, 1) if t_dense is not None else None,
        "chunks": polls[-1]["chunks_total"] if polls else None,
        "mean_rate_chunks_s": (
            round(polls[-1]["chunks_total"] / (t_dense - first["t"]), 2) if t_dense and first else None
        ),
        "eta": eta_errors(polls, t_dense) if t_dense else None,
        "load_first_last": [polls[0]["load"], polls[-1]["load"]] if polls else None,
        "cpu": os.cpu_count(),
    }
    if a.rate and t_dense is not None:
        res["latency"] = latencies(data, t0_wall, t_dense)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({**res, "polls": polls}, indent=1, default=str))
    print(json.dumps(res, indent=1, default=str))
    tmp.cleanup()


if __name__ == "__main__":
    main()
