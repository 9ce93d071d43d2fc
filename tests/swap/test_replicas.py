"""Two managed replicas behind one model id: balanced, and an in-place swap rolls them without a pause."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from bench.support.derive import derive_checkpoint
from tests.harness import group_members, kill_platform
from tests.swap.test_hot_swap import Load, answer, engine_pids, same_weights, switches

pytestmark = pytest.mark.slow


class HealthWatch:
    """Polls /health while a swap runs: how many engines are in rotation, and which versions."""

    def __init__(self, url: str):
        self.url = url
        self.samples: list[list[dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as c:
            while not self._stop.is_set():
                self.samples.append(c.get(f"{self.url}/health").json()["engines"])
                time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def test_rolling_in_place_swap_across_two_replicas_under_load(two_replicas, base_model_dir):
    p = two_replicas
    engines_before = p.engine_urls()
    assert len(engines_before) == 2 and len(set(engines_before)) == 2
    v2 = derive_checkpoint(base_model_dir, p.root / "v2", "v2", scale=1.05)
    p.cli("checkpoints", "add", str(v2))
    key = p.create_key("load")
    base_answer = answer(p.url, key)  # what serves is checked by its output, not only by its label
    with Load(p.url, key, workers=4) as load:
        load.wait_for(80)
        with HealthWatch(p.url) as promote_watch:
            out = p.cli("promote", "v2", "--reason", "replicas").stdout
        assert "promoted v2" in out and "in_place" in out, out
        for _ in range(2):  # both replicas (least-outstanding picks either)
            assert not same_weights(answer(p.url, key), base_answer), "v2's label, base's weights"
        load.wait_for(len(load.ok) + 80)
        with HealthWatch(p.url) as rollback_watch:
            out = p.cli("rollback").stdout
        assert "rolled back to base" in out and "in_place" in out, out
        for _ in range(2):
            assert same_weights(answer(p.url, key), base_answer), "base's label, other weights"
        load.wait_for(len(load.ok) + 80)
    assert not load.failures, load.failures[:5]

    rows = []
    for i in range(0, len(load.ok), 200):
        rows += p.rows(load.ok[i : i + 200], timeout=30)
    assert len(rows) == len(load.ok)
    rows.sort(key=lambda r: r["meta"]["dispatched_at"])
    assert switches([r["checkpoint_version"] for r in rows]) == [("base", "v2"), ("v2", "base")]
    # least-outstanding balancing used both replicas, for both versions
    for version in ("base", "v2"):
        assert {r["engine_url"] for r in rows if r["checkpoint_version"] == version} == set(engines_before)

    # capacity never dropped to zero, and the swap never held requests at the gateway
    for watch in (promote_watch, rollback_watch):
        assert watch.samples and min(sum(e["healthy"] for e in s) for s in watch.samples) >= 1
    history = json.loads(p.cli("checkpoints", "history", "--json").stdout)
    assert [(h["kind"], h["status"], h["strategy"]) for h in history[:2]] == [
        ("rollback", "succeeded", "in_place"),
        ("promote", "succeeded", "in_place"),
    ]
    assert all(h["held_seconds"] == 0 for h in history[:2])
    # in place: the same two engine processes serve, now both on base again
    engines = httpx.get(f"{p.url}/health").json()["engines"]
    assert sorted(e["url"] for e in engines) == sorted(engines_before)
    assert {(e["version"], e["healthy"]) for e in engines} == {("base", True)}


def test_kill_9_of_the_platform_takes_its_engines_down(two_replicas):
    """PR_SET_PDEATHSIG: engines (and vLLM's engine-core children in their process groups) die with us."""
    ports = [u.rsplit(":", 1)[1] for u in two_replicas.engine_urls()]
    leaders = [pid for port in ports for pid in engine_pids("--port " + port)]
    assert len(leaders) == 2
    assert all(group_members(pid) for pid in leaders)
    kill_platform(two_replicas, leaders, "engine processes")
