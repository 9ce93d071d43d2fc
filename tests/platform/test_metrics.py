"""GET /metrics on a real platform with two real vLLM replicas: auth, parse, counters move with traffic, the
two replicas share the load (both in the gateway's count and in each engine's own vLLM counters)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from keel.metrics import parse

from tests.harness import PlatformProcess

pytestmark = pytest.mark.slow


def scrape(p: PlatformProcess) -> dict:
    r = p.admin("GET", "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def samples(fams: dict, name: str, suffix: str = "", **labels) -> list:
    return [
        s
        for s in fams[name].samples
        if s.name == name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def total(fams: dict, name: str, suffix: str = "", **labels) -> float:
    return sum(s.value for s in samples(fams, name, suffix, **labels))


def per_engine(fams: dict, name: str, suffix: str = "") -> dict[str, float]:
    return {s.labels["engine"]: s.value for s in samples(fams, name, suffix)}


def test_metrics_need_an_admin_key(two_replicas):
    p = two_replicas
    assert httpx.get(f"{p.url}/metrics").status_code == 401
    bad = httpx.get(f"{p.url}/metrics", headers={"Authorization": "Bearer sk-nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    for role in ("user", "annotator"):
        key = p.create_key(f"m-{role}", role=role)
        r = httpx.get(f"{p.url}/metrics", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 403, (role, r.text)
        assert r.json()["error"]["type"] == "permission_error"
    admin = p.create_key("m-admin", role="admin")
    assert httpx.get(f"{p.url}/metrics", headers={"Authorization": f"Bearer {admin}"}).status_code == 200


def test_counters_move_with_traffic_and_two_replicas_share_it(two_replicas):
    p = two_replicas
    engines = p.engine_urls()
    assert len(set(engines)) == 2
    before = scrape(p)
    assert per_engine(before, "keel_engine_healthy") == dict.fromkeys(engines, 1.0)
    assert per_engine(before, "keel_engine_scrape_up") == dict.fromkeys(engines, 1.0)
    ok0 = total(before, "keel_requests", "_total", status="200")
    lat0 = total(before, "keel_request_duration_seconds", "_count")
    gw0 = per_engine(before, "keel_engine_requests", "_total")
    vllm0 = per_engine(before, "keel_engine_vllm_requests_finished", "_total")

    key = p.create_key("metrics-load")
    n = 24

    def one(i: int) -> int:
        r = httpx.post(
            f"{p.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": "keel",
                "messages": [{"role": "user", "content": f"Count to {i % 7 + 3}."}],
                "max_tokens": 24,
                "temperature": 0,
                "stream": i % 2 == 0,
            },
            timeout=300,
        )
        return r.status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(one, range(n)))
    assert codes == [200] * n
    bad = httpx.post(
        f"{p.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "keel", "messages": []},
    )
    assert bad.status_code == 400

    after = scrape(p)
    assert total(after, "keel_requests", "_total", status="200") - ok0 == n
    assert total(after, "keel_requests", "_total", status="400") >= 1
    assert total(after, "keel_request_duration_seconds", "_count") - lat0 == n + 1
    ttft = total(after, "keel_request_ttft_seconds", "_count", version="base")
    assert ttft >= n
    # a request's TTFT is never above its total latency: the sums say so too
    assert total(after, "keel_request_ttft_seconds", "_sum") <= total(
        after, "keel_request_duration_seconds", "_sum"
    )

    gw = per_engine(after, "keel_engine_requests", "_total")
    vllm = per_engine(after, "keel_engine_vllm_requests_finished", "_total")
    sent = {e: gw.get(e, 0) - gw0.get(e, 0) for e in engines}
    done = {e: vllm.get(e, 0) - vllm0.get(e, 0) for e in engines}
    print(f"gateway sent per engine: {sent}; engines' own vLLM request_success: {done}")
    assert sum(sent.values()) == n
    # least outstanding requests with 6 concurrent clients: each replica takes a real share
    assert min(sent.values()) >= n / 4, sent
    # and each engine's own counter saw its share (vLLM counts what it finished)
    assert all(done[e] >= sent[e] for e in engines), (sent, done)
    for name in (
        "keel_engine_requests_running",
        "keel_engine_requests_waiting",
        "keel_engine_kv_cache_usage_ratio",
    ):
        assert set(per_engine(after, name)) == set(engines), name
    assert total(after, "keel_requestlog_queue_depth") >= 0
    assert total(after, "keel_requestlog_spilled", "_total") == 0
    assert total(after, "keel_serving_version", version="base") == 1
    assert total(after, "keel_swap_in_progress") == 0


def test_index_progress_is_exported(two_replicas):
    p = two_replicas
    deadline = time.monotonic() + 300
    while True:
        fams = scrape(p)
        chunks = total(fams, "keel_index_chunks")
        embedded = total(fams, "keel_index_chunks_embedded") if "keel_index_chunks_embedded" in fams else 0
        if chunks > 0 and embedded == chunks:
            break
        assert time.monotonic() < deadline, (chunks, embedded)
        time.sleep(2)
    status = p.admin("GET", "/admin/index").json()
    assert chunks == status["chunks_total"] and embedded == status["chunks_embedded"]
    assert total(fams, "keel_index_state", state="idle") == 1
