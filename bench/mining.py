"""Flywheel benchmark: mining throughput on a synthetic request log, and the feedback endpoint's latency.

Run (Markdown printed, JSON saved to bench/results/mining.json):
    python bench/mining.py --rows 1000000 --feedback-requests 300

Mining: a DuckDB file with ``--rows`` logged requests (2% rated, 0.5% edited, 0.5% regenerated) is mined
in full by the same code `keel mine` runs (SQL pre-selection + the Python rules + dedup/PII). Feedback:
a platform on the same kind of file (no engine needed) answers POST /v1/feedback (thumbs) and
GET /v1/models (authentication only) alternately; added latency = the difference of the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from keel.store import DB_FILE  # noqa: E402

from bench.support.launcher import PlatformProcess  # noqa: E402

SEED_SQL = """
INSERT INTO requests (request_id, created_at, key_id, endpoint, messages, response_text, route,
                      checkpoint_version, status_code, regenerate_of, engine_messages, completion_text)
SELECT 'r' || i, TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i), $key, '/v1/chat/completions',
       json_array(json_object('role', 'user', 'content', 'Question ' || (i % 50000) || ' about TiDB topic ' || (i % 997))),
       'Answer ' || i || ' with some words about the topic', 'domain', 'base', 200,
       CASE WHEN i % 200 = 1 THEN 'r' || (i - 1) END,
       json_array(json_object('role', 'system', 'content', 'Documents about topic ' || (i % 997)),
                  json_object('role', 'user', 'content', 'Question ' || (i % 50000) || ' about TiDB topic ' || (i % 997))),
       'Answer ' || i || ' with some words about the topic'
FROM range($n) t(i);
INSERT INTO feedback (feedback_id, request_id, key_id, kind, rating, dedup_key, created_at)
SELECT 'ft' || i, 'r' || i, $key, 'thumbs', CASE WHEN i % 3 = 0 THEN -1 ELSE 1 END, 'ft' || i,
       TIMESTAMPTZ '2026-11-02 00:00:00+00'
FROM range($n) t(i) WHERE i % 50 = 0 OR i % 200 = 1 OR i % 200 = 0;
INSERT INTO feedback (feedback_id, request_id, key_id, kind, edited_text, dedup_key, created_at)
SELECT 'fe' || i, 'r' || i, $key, 'edit', 'Edited answer ' || i || ' that is better', 'fe' || i,
       TIMESTAMPTZ '2026-11-02 00:00:00+00'
FROM range($n) t(i) WHERE i % 200 = 7;
"""


def seed(db_path: Path, rows: int, key_id: str) -> None:
    from keel.store.db import connect

    con = connect(db_path)
    for stmt in filter(str.strip, SEED_SQL.split(";")):
        con.execute(stmt, {k: v for k, v in {"n": rows, "key": key_id}.items() if f"${k}" in stmt})
    con.close()


def bench_mining(rows: int) -> dict:
    from keel.config import load_settings
    from keel.cycle.mining import mining_hooks, run_mining
    from keel.store.db import Database

    tmp = Path(tempfile.mkdtemp())
    settings = load_settings(overrides=[f"data_dir={tmp}"])
    t0 = time.perf_counter()
    seed(settings.db_path, rows, "k")
    seeded = time.perf_counter() - t0
    db = Database(settings.db_path)
    t0 = time.perf_counter()
    out = run_mining(db, settings, full=True, hooks=mining_hooks(settings.mining, settings.eval))
    dt = time.perf_counter() - t0
    db.close()
    st = out["stats"]
    return {
        "rows": rows,
        "seed_s": round(seeded, 1),
        "mine_s": round(dt, 2),
        "requests_per_s": round(rows / dt),
        "pairs": st.get("pairs", 0),
        "sft": st.get("sft", 0),
        "feedback": st.get("feedback", 0),
    }


def bench_feedback(n: int) -> dict:
    from keel.checkpoints.basemodel import ensure_base

    tmp = Path(tempfile.mkdtemp())
    base = ensure_base(Path.home() / ".cache" / "keel-test" / "checkpoints", None)  # the tests' cached copy
    p = PlatformProcess(
        data_dir=tmp,
        model_dir=base,
        overrides=['engine.external_urls=["http://127.0.0.1:9"]'],
    )
    key = p.create_key("bench")
    key_id = json.loads(p.cli("keys", "list", "--json").stdout)[0]["key_id"]
    seed(tmp / DB_FILE, 100_000, key_id)
    p.start(timeout=300)
    h = {"Authorization": f"Bearer {key}"}
    fb, models = [], []
    try:
        with httpx.Client(base_url=p.url, headers=h, timeout=30) as c:
            for i in range(n):
                t0 = time.perf_counter()
                r = c.post(
                    "/v1/feedback", json={"request_id": f"r{i * 7 + 3}", "type": "thumbs", "rating": "up"}
                )
                fb.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 201, r.text
                t0 = time.perf_counter()
                c.get("/v1/models")
                models.append((time.perf_counter() - t0) * 1000)
    finally:
        p.stop()
    med_fb, med_m = statistics.median(fb), statistics.median(models)
    return {
        "requests": n,
        "feedback_p50_ms": round(med_fb, 2),
        "feedback_p95_ms": round(statistics.quantiles(fb, n=20)[18], 2),
        "models_p50_ms": round(med_m, 2),
        "added_p50_ms": round(med_fb - med_m, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--feedback-requests", type=int, default=300)
    args = ap.parse_args()
    res = {"mining": bench_mining(args.rows)}
    if args.feedback_requests:
        res["feedback"] = bench_feedback(args.feedback_requests)
    out = REPO / "bench" / "results" / "mining.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    m = res["mining"]
    print("| log rows | mining time | requests/s | pairs | SFT |\n|---|---|---|---|---|")
    print(f"| {m['rows']:,} | {m['mine_s']} s | {m['requests_per_s']:,} | {m['pairs']:,} | {m['sft']:,} |")
    if "feedback" in res:
        f = res["feedback"]
        print("\n| POST /v1/feedback p50 | p95 | GET /v1/models p50 | added p50 |\n|---|---|---|---|")
        print(
            f"| {f['feedback_p50_ms']} ms | {f['feedback_p95_ms']} ms | {f['models_p50_ms']} ms | {f['added_p50_ms']} ms |"
        )


if __name__ == "__main__":
    main()
