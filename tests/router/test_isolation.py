"""Routing cost is bounded and one user's long message never holds up another's (issue 16, finding A).

The real router (real E5 embedder, real intents) through the gateway's hook; no index, so the domain
route falls back, which does not matter here: classification is what a long message made expensive.
Speeds are compared as ratios measured in the same test, never as absolute times.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from serving.router.config import RouterConfig
from serving.router.hook import gateway_router
from serving.router.service import build_router


def short(n: int) -> list[dict]:
    """ "Hi there" from another user; `n` makes each one a new message (no embedding cache hit)."""
    return [{"role": "user", "content": f"Hi there, it's user {n}"}]


PARAGRAPH = (
    "We run TiDB 7.5 on three regions and after the upgrade the PD leader moved twice an hour; the logs show "
    "heartbeat timeouts on the TiKV stores in the far region and the placement rules look fine to us. "
)


def long_message(chars: int, n: int = 0) -> list[dict]:
    """A pasted log of `chars` characters; `n` makes it a different message (no embedding cache hit)."""
    text = (f"[{n}] " + PARAGRAPH * (chars // len(PARAGRAPH) + 1))[:chars]
    return [{"role": "user", "content": text + f" What should we check first (case {n})?"}]


@pytest.fixture(scope="module")
def router():
    r = build_router(RouterConfig())
    yield r
    r.pool.shutdown()


async def _timed(hook, messages) -> tuple[float, object]:
    t = time.perf_counter()
    decision = await hook(messages)
    return time.perf_counter() - t, decision


def test_short_message_is_not_held_behind_another_users_long_one(router):
    """The issue's repro as a ratio: "Hi there" while a 12k-character message is being classified vs alone
    (before: 20.6 s vs 0.36 s, the short one waited for the whole long embedding under one lock)."""
    hook = gateway_router(router, deadline_s=120)  # no deadline in the way: this measures isolation

    async def scenario():
        await hook(short(0))  # warm
        alone = [(await _timed(hook, short(i)))[0] for i in range(1, 6)]
        in_flight, stop = [0], asyncio.Event()

        async def other_user():  # long messages back to back, so one is always being classified
            n = 0
            while not stop.is_set():
                in_flight[0] += 1
                n += 1
                try:
                    await hook(long_message(12_000, n))
                finally:
                    in_flight[0] -= 1

        task = asyncio.create_task(other_user())
        await asyncio.sleep(0.3)  # the first long message is inside the embedder by now
        during = []
        for i in range(6, 11):
            assert in_flight[0] == 1, "the long message was not being classified during the measurement"
            during.append((await _timed(hook, short(i)))[0])
            await asyncio.sleep(0.05)
        stop.set()
        await task
        return statistics.median(alone), statistics.median(during)

    alone, during = asyncio.run(scenario())
    assert during / alone <= 4.0, (
        f"short message: {during * 1000:.0f} ms during a long one, {alone * 1000:.0f} alone"
    )


def test_a_200k_character_message_costs_no_more_than_one_window(router):
    """Before: 354 s for 200,000 characters, growing with the length. Now the router reads a bounded part
    (head and tail within the embedder's 512-token window): as cheap as a message that fills one window."""
    hook = gateway_router(router, deadline_s=120)

    async def scenario():
        await hook(long_message(3_000, 1))  # warm the long lane
        one_window, d1 = await _timed(hook, long_message(3_000, 2))
        huge, d2 = await _timed(hook, long_message(200_000, 3))
        return one_window, d1, huge, d2

    one_window, d1, huge, d2 = asyncio.run(scenario())
    for d in (d1, d2):  # really classified, not a fallback
        assert d.route in ("chat", "domain", "out_of_scope") and d.info.fallback_reason is None, d.info
    assert huge / one_window <= 2.0, f"200k characters: {huge:.2f} s, one window: {one_window:.2f} s"


def test_routing_past_the_deadline_is_a_flagged_direct_route():
    """A deadline from config: past it the request is served directly, flagged, never an error."""
    # a deadline no embedding can meet on any CPU, so the test does not depend on this machine's speed
    r = build_router(RouterConfig(deadline_s=0.01))
    try:
        hook = gateway_router(r)  # the deadline comes from router.deadline_s
        elapsed, d = asyncio.run(_timed(hook, long_message(200_000)))
        assert d.route == "direct" and d.messages is None and d.reply is None
        assert d.info.fallback is True and "0.01 s" in d.info.fallback_reason
        # abandoned at the deadline: it did not wait for the embedding it gave up on (~2 s here)
        assert elapsed < 0.5, elapsed
    finally:
        r.pool.shutdown()


def test_a_full_long_lane_sends_messages_direct_at_once_and_leaves_short_ones_alone():
    r = build_router(RouterConfig(queue=0, long_workers=1, deadline_s=120))
    try:
        hook = gateway_router(r)

        async def scenario():
            first = asyncio.create_task(hook(long_message(20_000, 1)))
            await asyncio.sleep(0.1)  # the first one holds the long lane's only worker
            second = await hook(long_message(20_000, 2))
            alone = await hook(short(1))
            return await first, second, alone

        first, second, alone = asyncio.run(scenario())
        assert first.info.fallback_reason is None
        assert (
            second.route == "direct" and second.info.fallback and "lane full" in second.info.fallback_reason
        )
        assert alone.route != "direct" and alone.info.fallback_reason is None
    finally:
        r.pool.shutdown()


def test_routing_threads_stop_with_the_router():
    """Platform.stop closes the router: its lanes take no more work and their threads end."""
    import asyncio

    from serving.router.workers import RoutingPool

    pool = RoutingPool(workers=1, long_workers=1)
    assert asyncio.run(pool.run(sum, [1, 2])) == 3
    threads = [t for lane in (pool.short, pool.long) for t in lane.executor._threads]
    pool.shutdown()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    with pytest.raises(RuntimeError):
        asyncio.run(pool.run(sum, [1, 2]))
