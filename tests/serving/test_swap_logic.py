"""Rolling in-place swap across replicas, around fake engines (unit logic; real engines: tests/swap)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from serving.engine.pool import Endpoint, EnginePool
from serving.engine.swap import Swapper


class FakeReplicas:
    """vLLM admin + chat routes for several hosts; `fail_reload` hosts refuse to load the new weights."""

    def __init__(self, fail_reload: set[str] = frozenset()):
        self.fail_reload = fail_reload
        self.weights: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        self.calls.append((host, path))
        await asyncio.sleep(0.005)
        if path == "/collective_rpc":
            weights = json.loads(request.content)["kwargs"]["weights_path"]
            if host in self.fail_reload and weights.endswith("new"):
                return httpx.Response(500, text="reload failed")
            self.weights[host] = weights
        if path == "/v1/chat/completions":
            return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})
        return httpx.Response(200, json={})


def make_pool(hosts: list[str], old_dir: Path) -> EnginePool:
    pool = EnginePool()
    pool.endpoints = [Endpoint(url=f"http://{h}", version="old", model_dir=str(old_dir)) for h in hosts]
    return pool


async def picks_during(pool: EnginePool, swap) -> tuple[list[str], object]:
    """Lease endpoints continuously while the swap runs; return the version of every pick in order."""
    seen: list[str] = []
    done = asyncio.Event()

    async def client_loop():
        while not done.is_set():
            async with pool.lease(wait_s=5) as ep:
                seen.append(ep.version)
                await asyncio.sleep(0.002)

    loops = [asyncio.create_task(client_loop()) for _ in range(3)]
    try:
        result = await swap
    finally:
        done.set()
        await asyncio.gather(*loops)
    return seen, result


def test_rolling_swap_switches_once_and_keeps_capacity(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    fake = FakeReplicas()
    pool = make_pool(["r1", "r2", "r3"], old)
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    swapper = Swapper(pool, None, client, "keel", drain_timeout_s=5, warmup_timeout_s=5)

    async def run():
        healthy_counts: list[int] = []

        async def watch():
            while True:
                healthy_counts.append(sum(e.healthy for e in pool.endpoints))
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        seen, held = await picks_during(pool, swapper._in_place("v-new", new))
        watcher.cancel()
        return seen, held, healthy_counts

    seen, held, healthy_counts = asyncio.run(run())
    assert held == 0.0  # no request was held: another replica always had capacity
    assert min(healthy_counts) >= 1
    assert "old" in seen and "v-new" in seen
    switch_points = [i for i in range(1, len(seen)) if seen[i] != seen[i - 1]]
    assert len(switch_points) == 1, seen
    assert all(e.version == "v-new" and e.healthy for e in pool.endpoints)
    assert set(fake.weights.values()) == {str(new)}
    # every replica was paused, reloaded, reset and resumed, in that order
    for host in ("r1", "r2", "r3"):
        admin = [p for h, p in fake.calls if h == host and p != "/v1/chat/completions"]
        assert admin == ["/pause", "/collective_rpc", "/reset_prefix_cache", "/resume"]


def test_replica_that_cannot_reload_leaves_rotation_instead_of_serving_old_weights(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    fake = FakeReplicas(fail_reload={"r2"})
    pool = make_pool(["r1", "r2"], old)
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    swapper = Swapper(pool, None, client, "keel", drain_timeout_s=5, warmup_timeout_s=5)

    seen, _ = asyncio.run(picks_during(pool, swapper._in_place("v-new", new)))

    r1, r2 = pool.endpoints
    assert r1.healthy and r1.version == "v-new"
    assert not r2.healthy  # an external replica: restored to its old weights but kept out of rotation
    assert fake.weights["r2"] == str(old)
    after_switch = seen[seen.index("v-new") :]
    assert set(after_switch) == {"v-new"}, "a request reached the old weights after the switch"
    assert pool.version == "v-new"
