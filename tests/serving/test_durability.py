"""Nothing is lost: SIGTERM under load flushes every row; kill -9 after responses completes is replayed."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.harness import PlatformProcess, db_rows

pytestmark = pytest.mark.slow

BODY = {"model": "keel", "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 24}


def second_platform(platform_server, base_model_dir, tmp_path, *extra: str) -> PlatformProcess:
    """A platform of its own (own DuckDB, own journal) that borrows the session's engine as an external URL."""
    urls = platform_server.engine_urls()
    overrides = [f"engine.external_urls={urls!r}".replace("'", '"'), "router.enabled=false", *extra]
    return PlatformProcess(data_dir=tmp_path / "data", model_dir=base_model_dir, overrides=overrides).start()


def fire(url: str, key: str, n: int, stream_every: int = 2) -> tuple[list[str], list[Exception]]:
    """n concurrent requests; returns the request ids that got a complete answer."""
    done: list[str] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        body = {**BODY, "stream": i % stream_every == 0}
        try:
            with httpx.Client(timeout=120) as c:
                r = c.post(
                    f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
                )
                if r.status_code == 200 and (not body["stream"] or r.text.rstrip().endswith("data: [DONE]")):
                    with lock:
                        done.append(r.headers["x-request-id"])
        except httpx.HTTPError as e:
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join()
    return done, errors


def test_sigterm_under_load_flushes_every_row(platform_server, base_model_dir, tmp_path):
    p = second_platform(platform_server, base_model_dir, tmp_path)
    key = p.create_key("load")
    result: dict = {}
    t = threading.Thread(
        target=lambda: result.update(zip(("done", "errors"), fire(p.url, key, 24), strict=False))
    )
    t.start()
    time.sleep(1.0)  # requests are in flight now
    p.signal(signal.SIGTERM)
    t.join()
    assert p.wait(120) == 0
    done = result["done"]
    assert done, "no request completed before shutdown"
    rows = db_rows(p.data_dir / "keel.duckdb", "SELECT request_id, status_code FROM requests")
    logged = {rid for rid, _ in rows}
    assert set(done) <= logged  # every answered request has its row
    assert len(rows) == len(logged)  # and exactly one
    assert not list((p.data_dir / "journal").glob("seg-*.jsonl")), (
        "journal should be empty after a clean stop"
    )


def test_kill_9_after_responses_replays_the_journal(platform_server, base_model_dir, tmp_path):
    # A writer that would wait a minute before committing: rows exist only in the journal when we kill.
    slow_writer = ["requestlog.flush_interval_s=60", "requestlog.batch_size=100000"]
    p = second_platform(platform_server, base_model_dir, tmp_path, *slow_writer)
    key = p.create_key("crash")
    done, errors = fire(p.url, key, 8)
    assert len(done) == 8 and not errors
    p.signal(signal.SIGKILL)
    p.wait(30)
    assert db_rows(p.data_dir / "keel.duckdb", "SELECT count(*) FROM requests") == [(0,)]

    again = PlatformProcess(data_dir=p.data_dir, model_dir=base_model_dir, overrides=p.overrides[:1]).start()
    try:
        rows = again.rows(done)
        assert {r["request_id"] for r in rows} == set(done)
        assert all(r["status_code"] == 200 and r["response_text"] for r in rows)
    finally:
        again.stop()
    rows = db_rows(again.data_dir / "keel.duckdb", "SELECT count(*) FROM requests")
    assert rows == [(8,)]  # replay is idempotent: no duplicates
