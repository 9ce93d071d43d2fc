"""Rolling in-place swap across replicas, around fake engines (unit logic; real engines: tests/swap)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from serving.config import SwapConfig
from serving.engine.fingerprint import Fingerprint, ProbeAnswer, compare
from serving.engine.pool import Endpoint, EnginePool
from serving.engine.swap import SwapError, Swapper, WrongWeightsError


def fake_fingerprint(seed: int) -> Fingerprint:
    """What weights numbered `seed` answer: two probes, log-probabilities that differ per seed."""
    rng = np.random.default_rng(seed)
    return Fingerprint(
        probes=[
            ProbeAnswer(
                prompt_ids=[10 * i + 1, 10 * i + 2, 10 * i + 3, 10 * i + 4],
                prompt_logprobs=[float(x) for x in -rng.uniform(0.1, 5, 3)],
                tokens=[int(x) for x in rng.integers(5, 100, 4)],
                logprobs=[float(x) for x in -rng.uniform(0.1, 2, 4)],
            )
            for i in range(2)
        ]
    )


class FakeReplicas:
    """vLLM admin, chat and completion routes for several hosts, answering probes with the weights loaded.

    `fail_reload` hosts refuse to load the new weights; `stale` hosts answer 200 to reload_weights and keep
    the old ones (vllm#32718)."""

    def __init__(
        self,
        fail_reload: set[str] = frozenset(),
        stale: set[str] = frozenset(),
        answers: dict[str, Fingerprint] | None = None,
        start: str = "",
    ):
        self.fail_reload, self.stale = fail_reload, stale
        self.answers = answers or {}  # weights folder → what those weights answer to the probes
        self.start = start
        self.weights: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []

    def _probe(self, host: str, body: dict) -> httpx.Response:
        fp = self.answers[self.weights.get(host, self.start)]
        probe = next(p for p in fp.probes if p.prompt_ids == body["prompt"])
        return httpx.Response(
            200,
            json={
                "choices": [
                    {
                        "token_ids": probe.tokens,
                        "logprobs": {"token_logprobs": probe.logprobs},
                        "prompt_logprobs": [None]
                        + [
                            {str(t): {"logprob": lp}}
                            for t, lp in zip(probe.prompt_ids[1:], probe.prompt_logprobs, strict=True)
                        ],
                    }
                ]
            },
        )

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        self.calls.append((host, path))
        await asyncio.sleep(0.005)
        if path == "/collective_rpc":
            weights = json.loads(request.content)["kwargs"]["weights_path"]
            if host in self.fail_reload and weights.endswith("new"):
                return httpx.Response(500, text="reload failed")
            if host not in self.stale:
                self.weights[host] = weights
        if path == "/v1/chat/completions":
            return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})
        if path == "/v1/completions":
            return self._probe(host, json.loads(request.content))
        return httpx.Response(200, json={})


def tiny_checkpoint(folder: Path, seed: int) -> Path:
    """A servable folder (config, weights, tokenizer) of one architecture; the weights differ per seed."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["Tiny"], "hidden_size": 4}))
    (folder / "tokenizer.json").write_text("{}")
    rng = np.random.default_rng(seed)
    save_file({"w": rng.standard_normal((4, 4)).astype(np.float32)}, str(folder / "model.safetensors"))
    return folder


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
    swapper = Swapper(pool, None, client, "keel", SwapConfig(drain_timeout_s=5, warmup_timeout_s=5))

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
    assert held is None
    assert pool.held_so_far() == 0.0  # measured at the gate: another replica always had capacity
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
    swapper = Swapper(pool, None, client, "keel", SwapConfig(drain_timeout_s=5, warmup_timeout_s=5))

    seen, _ = asyncio.run(picks_during(pool, swapper._in_place("v-new", new)))

    r1, r2 = pool.endpoints
    assert r1.healthy and r1.version == "v-new"
    assert not r2.healthy  # an external replica: restored to its old weights but kept out of rotation
    assert fake.weights["r2"] == str(old)
    after_switch = seen[seen.index("v-new") :]
    assert set(after_switch) == {"v-new"}, "a request reached the old weights after the switch"
    assert pool.version == "v-new"


def test_compare_tolerates_noise_and_near_ties_but_not_other_weights():
    a = fake_fingerprint(1)
    noisy = a.model_copy(deep=True)
    for p in noisy.probes:
        p.prompt_logprobs = [x + 1e-4 for x in p.prompt_logprobs]
    assert compare(a, noisy, 0.02) is None
    tie = a.model_copy(deep=True)
    tie.probes[0].tokens[1:] = [7, 7, 7]  # a near tie broke the other way: same log-probability, new text
    tie.probes[0].logprobs[2:] = [-9.0, -9.0]
    assert compare(a, tie, 0.02) is None
    assert "prompt token" in (compare(a, fake_fingerprint(2), 0.02) or "")
    nan = a.model_copy(deep=True)
    nan.probes[1].prompt_logprobs[0] = float("nan")
    assert compare(a, nan, 0.02) is not None
    shorter = a.model_copy(deep=True)
    shorter.probes[1].tokens.pop()
    assert "greedy tokens" in (compare(a, shorter, 0.02) or "")


def _single(tmp_path, stale: bool):
    old = tiny_checkpoint(tmp_path / "old", 1)
    new = tiny_checkpoint(tmp_path / "new", 2)
    fps = {str(old): fake_fingerprint(1), str(new): fake_fingerprint(2)}
    fake = FakeReplicas(stale={"e1"} if stale else set(), answers=fps, start=str(old))
    pool = make_pool(["e1"], old)
    pool.endpoints[0].fingerprint = fps[str(old)]
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    swapper = Swapper(pool, None, client, "keel", SwapConfig(drain_timeout_s=5, warmup_timeout_s=5))
    return old, new, fps, fake, pool, swapper


def test_in_place_swap_is_refused_when_the_engine_keeps_the_old_weights(tmp_path):
    old, new, fps, fake, pool, swapper = _single(tmp_path, stale=True)

    async def run():
        with pytest.raises(WrongWeightsError) as e:
            await swapper.swap("v-new", new, fingerprint=fps[str(new)])
        # nothing waits at the gate after a refusal, and the next request goes to the old version
        async with pool.lease(wait_s=1) as ep:
            return e.value, ep

    err, ep = asyncio.run(run())
    assert "does not serve the weights of v-new" in str(err) and "old weights were put back" in str(err)
    assert ep.version == "old" and ep.healthy and ep.model_dir == str(old)
    assert ep.fingerprint == fps[str(old)]
    # the old folder was reloaded (and verified) after the refusal
    rpcs = [p for h, p in fake.calls if p == "/collective_rpc"]
    assert len(rpcs) == 2
    assert [p for h, p in fake.calls].count("/v1/completions") == 2 * 2  # new probes, then old probes


def test_verified_in_place_swap_serves_the_new_weights_and_measures_the_hold(tmp_path):
    old, new, fps, fake, pool, swapper = _single(tmp_path, stale=False)
    result = asyncio.run(swapper.swap("v-new", new, fingerprint=fps[str(new)]))
    assert result.strategy == "in_place"
    assert fake.weights["e1"] == str(new)
    ep = pool.endpoints[0]
    assert ep.version == "v-new" and ep.fingerprint == fps[str(new)]
    # one replica: requests were held for the reload, and the hold is measured (not a constant)
    assert 0 < result.held_s <= result.seconds
    assert pool.held_so_far() == pytest.approx(result.held_s)


def test_restore_that_does_not_verify_takes_the_engine_out_of_rotation(tmp_path):
    old, new, fps, fake, pool, swapper = _single(tmp_path, stale=False)
    fps[str(new)] = fake_fingerprint(2)
    expected_new = fake_fingerprint(3)  # the registry expects other weights than the folder holds
    fake.answers[str(old)] = fake_fingerprint(4)  # and the old folder no longer answers like before
    with pytest.raises(SwapError) as e:
        asyncio.run(swapper.swap("v-new", new, fingerprint=expected_new))
    assert "left rotation" in str(e.value)
    assert not pool.endpoints[0].healthy


def test_rolling_swap_takes_a_stale_replica_out_of_rotation(tmp_path):
    old = tiny_checkpoint(tmp_path / "old", 1)
    new = tiny_checkpoint(tmp_path / "new", 2)
    fps = {str(old): fake_fingerprint(1), str(new): fake_fingerprint(2)}
    fake = FakeReplicas(stale={"r2"}, answers=fps, start=str(old))
    pool = make_pool(["r1", "r2"], old)
    for ep in pool.endpoints:
        ep.fingerprint = fps[str(old)]
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    swapper = Swapper(pool, None, client, "keel", SwapConfig(drain_timeout_s=5, warmup_timeout_s=5))

    seen, result = asyncio.run(picks_during(pool, swapper.swap("v-new", new, fingerprint=fps[str(new)])))

    r1, r2 = pool.endpoints
    assert r1.healthy and r1.version == "v-new" and fake.weights["r1"] == str(new)
    assert not r2.healthy, "a replica still on the old weights stayed in rotation"
    assert set(seen[seen.index("v-new") :]) == {"v-new"}
    assert result.held_s == 0.0  # measured: capacity was always there


class FakeSupervisor:
    """Starts 'engines' on fresh hosts of the fake, each loading its folder from scratch (never stale)."""

    def __init__(self, fake: FakeReplicas):
        self.fake, self.started, self.stopped = fake, [], []

    async def start_engine(self, version: str, model_dir: Path, timeout: float):
        host = f"fresh{len(self.started) + 1}"
        self.fake.weights[host] = str(model_dir)
        ep = Endpoint(url=f"http://{host}", version=version, model_dir=str(model_dir), managed=True)
        self.started.append(ep)
        return ep, None

    async def stop_endpoint(self, ep: Endpoint) -> None:
        self.stopped.append(ep.url)


def test_an_engine_that_keeps_stale_weights_in_place_is_replaced_by_a_fresh_one(tmp_path):
    """A reload that answers 200 but leaves old weights (a tied output layer's packed copy on CPU): the
    old weights are put back, then a fresh engine loads the folder and serves once it verifies."""
    old, new, fps, fake, pool, _ = _single(tmp_path, stale=True)
    sup = FakeSupervisor(fake)
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    swapper = Swapper(pool, sup, client, "keel", SwapConfig(drain_timeout_s=5, warmup_timeout_s=5))
    result = asyncio.run(swapper.swap("v-new", new, fingerprint=fps[str(new)]))
    assert result.strategy == "blue_green"
    [ep] = pool.endpoints
    assert ep.url == "http://fresh1" and ep.version == "v-new" and ep.fingerprint == fps[str(new)]
    assert sup.stopped == ["http://e1"]  # the stale engine was drained and stopped
    # asked for in place explicitly, the refusal stands (nothing is started behind the caller's back)
    old2, new2, fps2, fake2, pool2, _ = _single(tmp_path / "again", stale=True)
    sup2 = FakeSupervisor(fake2)
    swapper2 = Swapper(pool2, sup2, httpx.AsyncClient(transport=httpx.MockTransport(fake2)), "keel")
    with pytest.raises(WrongWeightsError):
        asyncio.run(swapper2.swap("v-new", new2, strategy="in_place", fingerprint=fps2[str(new2)]))
    assert sup2.started == [] and pool2.endpoints[0].version == "old"


def test_a_drain_that_times_out_fails_the_first_replica_and_warns_on_the_rest(tmp_path, caplog):
    """Before anything changed (the first replica) a busy engine fails the swap and serves on as it was;
    once the new version serves, a busy replica is reloaded anyway, with a warning."""
    old, new = tmp_path / "old", tmp_path / "new"
    fake = FakeReplicas()
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    config = SwapConfig(drain_timeout_s=0.05, warmup_timeout_s=5)

    pool = make_pool(["r1", "r2"], old)
    pool.endpoints[0].idle.clear()  # a request that never finishes
    with pytest.raises(SwapError, match=r"on http://r1 did not finish in 0 s; nothing changed"):
        asyncio.run(Swapper(pool, None, client, "keel", config)._in_place("v-new", new))
    assert [(e.version, e.healthy) for e in pool.endpoints] == [("old", True), ("old", True)]
    assert not fake.calls

    pool = make_pool(["r1", "r2"], old)
    pool.endpoints[1].idle.clear()
    with caplog.at_level("WARNING", logger="keel.swap"):
        asyncio.run(Swapper(pool, None, client, "keel", config)._in_place("v-new", new))
    assert all(e.version == "v-new" and e.healthy for e in pool.endpoints)
    assert "http://r2 still busy after 0 s; reloading anyway" in caplog.text
