"""keel.metrics on its own: request counting, scrape-time parts and the engine scrape (a stand-in engine
serving vLLM's exposition over real HTTP). The real platform with real engines: tests/platform/test_metrics.py."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import duckdb
import pytest
from keel.metrics import PlatformMetrics, parse

from serving.engine.pool import Endpoint, EnginePool
from serving.records import RequestRecord

VLLM_TEXT = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="keel"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="keel"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="keel"} 0.25
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="keel"} 5.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="keel"} 2.0
"""


class _Engine(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = VLLM_TEXT.encode()
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def engine_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Engine)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Db:
    def __init__(self):
        self.con = duckdb.connect()
        self.con.execute(
            "CREATE TABLE swaps (kind VARCHAR, status VARCHAR, strategy VARCHAR, seconds DOUBLE)"
        )

    def fetchall(self, sql, params=None):
        return self.con.execute(sql, params or []).fetchall()


def fake_platform(endpoints):
    pool = EnginePool()
    pool.endpoints = endpoints
    writer = SimpleNamespace(stats=lambda: {"queued": 7, "written": 40, "spilled": 2})
    index_status = {"state": "embedding", "chunks_total": 100, "chunks_embedded": 30, "eta_s": 70.0}
    return SimpleNamespace(
        pool=pool,
        writer=writer,
        supervisor=SimpleNamespace(last_error=None),
        db=_Db(),
        swapper=SimpleNamespace(lock=threading.Lock()),
        indexer=SimpleNamespace(status=lambda: index_status),
    )


def value(families, name, **labels):
    fam = families[name]
    for s in fam.samples:
        if all(s.labels.get(k) == v for k, v in labels.items()) and s.name in (name, name + "_total"):
            return s.value
    raise AssertionError(f"no sample {name} {labels} in {fam.samples}")


def test_counts_requests_and_reads_parts_at_scrape_time(engine_url):
    dead = "http://127.0.0.1:9"  # nothing listens: the scrape must not fail, only say so
    p = fake_platform(
        [Endpoint(url=engine_url, version="v2"), Endpoint(url=dead, version="v2", healthy=False)]
    )
    p.db.con.execute(
        "INSERT INTO swaps VALUES ('promote','succeeded','in_place',1.5), ('rollback','succeeded','in_place',0.7),"
        " ('promote','failed',NULL,NULL)"
    )
    # the live engine must answer its /metrics in time even on a loaded box; the dead one refuses at once
    m = PlatformMetrics(p, engine_scrape_timeout_s=5.0)
    for status, route in ((200, "domain"), (200, "domain"), (400, "direct")):
        m.observe(
            RequestRecord(
                request_id="r",
                route=route,
                checkpoint_version="v2",
                engine_url=engine_url if status == 200 else None,
                status_code=status,
                ttft_ms=120.0,
                latency_ms=900.0,
                completion_tokens=12,
            )
        )
    fams = parse(m.render().decode())
    assert value(fams, "keel_requests", route="domain", version="v2", status="200") == 2
    assert value(fams, "keel_requests", route="direct", status="400") == 1
    # a rejected request counts in latency but not in TTFT
    assert fams["keel_request_ttft_seconds"].samples  # histogram present
    ttft_count = [s for s in fams["keel_request_ttft_seconds"].samples if s.name.endswith("_count")]
    assert sum(s.value for s in ttft_count) == 2
    lat_count = [s for s in fams["keel_request_duration_seconds"].samples if s.name.endswith("_count")]
    assert sum(s.value for s in lat_count) == 3
    assert value(fams, "keel_engine_requests", engine=engine_url) == 2
    assert value(fams, "keel_requestlog_queue_depth") == 7
    assert value(fams, "keel_requestlog_spilled") == 2
    # the engine's own vLLM series, summed over vLLM's labels; the dead engine is reported down
    assert value(fams, "keel_engine_requests_running", engine=engine_url) == 3
    assert value(fams, "keel_engine_requests_waiting", engine=engine_url) == 1
    assert value(fams, "keel_engine_kv_cache_usage_ratio", engine=engine_url) == 0.25
    assert value(fams, "keel_engine_vllm_requests_finished", engine=engine_url) == 7
    assert value(fams, "keel_engine_scrape_up", engine=engine_url) == 1
    assert value(fams, "keel_engine_scrape_up", engine=dead) == 0
    assert value(fams, "keel_engine_healthy", engine=dead) == 0
    # swaps from the registry's history
    assert value(fams, "keel_swaps", kind="promote", status="succeeded", strategy="in_place") == 1
    assert value(fams, "keel_swaps", kind="promote", status="failed", strategy="") == 1
    swap_count = [s for s in fams["keel_swap_duration_seconds"].samples if s.name.endswith("_count")]
    assert sum(s.value for s in swap_count) == 2
    assert value(fams, "keel_swap_in_progress") == 0
    # index progress
    assert value(fams, "keel_index_chunks") == 100
    assert value(fams, "keel_index_chunks_embedded") == 30
    assert value(fams, "keel_index_state", state="embedding") == 1
    assert value(fams, "keel_serving_version", version="v2") == 1


def test_cycle_state_and_step_durations_come_from_the_cycle_tables(tmp_path):
    from keel.store.db import Database

    db = Database(tmp_path / "keel.duckdb")  # the real schema, cycle tables included
    p = fake_platform([])
    p.db = db
    m = PlatformMetrics(p)
    fams = parse(m.render().decode())
    assert value(fams, "keel_cycle_state", state="idle") == 1
    db.execute(
        "INSERT INTO cycles (cycle_id, status, trigger, stages, config, outcome, started_at, finished_at) VALUES "
        "('c1', 'succeeded', 'cli', '[]', '{}', 'promoted', now() - INTERVAL 2 HOUR, now() - INTERVAL 1 HOUR),"
        "('c2', 'running', 'schedule', '[]', '{}', NULL, now() - INTERVAL 10 MINUTE, NULL)"
    )
    db.execute(
        "INSERT INTO cycle_steps (cycle_id, name, seq, status, started_at, finished_at) VALUES "
        "('c1', 'mine', 1, 'done', now() - INTERVAL 120 MINUTE, now() - INTERVAL 119 MINUTE),"
        "('c1', 'train:sft', 2, 'done', now() - INTERVAL 119 MINUTE, now() - INTERVAL 79 MINUTE),"
        "('c2', 'mine', 1, 'done', now() - INTERVAL 10 MINUTE, now() - INTERVAL 9 MINUTE),"
        "('c2', 'train:sft', 2, 'running', now() - INTERVAL 9 MINUTE, NULL)"
    )
    fams = parse(m.render().decode())
    assert value(fams, "keel_cycle_state", state="running", step="train:sft") == 1
    assert not [s for s in fams["keel_cycle_state"].samples if s.labels["state"] == "idle"]
    assert 500 < value(fams, "keel_cycle_step_running_seconds") < 600
    assert value(fams, "keel_cycles", status="succeeded", outcome="promoted") == 1
    counts = {
        (s.labels["step"], s.labels["stage"], s.labels["status"]): s.value
        for s in fams["keel_cycle_step_duration_seconds"].samples
        if s.name.endswith("_count")
    }
    assert counts == {("mine", "", "done"): 2, ("train", "sft", "done"): 1}
    sums = {
        s.labels["step"]: s.value
        for s in fams["keel_cycle_step_duration_seconds"].samples
        if s.name.endswith("_sum")
    }
    assert sums["train"] == 2400 and sums["mine"] == 120
    db.close()


def test_two_platforms_in_one_process_do_not_share_series():
    a, b = PlatformMetrics(None), PlatformMetrics(None)
    a.observe(RequestRecord(request_id="x", checkpoint_version="base", latency_ms=1.0))
    fa, fb = parse(a.render().decode()), parse(b.render().decode())
    assert value(fa, "keel_requests", version="base") == 1
    assert not [s for s in fb["keel_requests"].samples if s.name == "keel_requests_total"]
