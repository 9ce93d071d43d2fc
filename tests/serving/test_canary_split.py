"""The canary's traffic split in the pool (issue 27): a sticky share of conversations goes to the
candidate's endpoints, one conversation never flips arms, and each request row records its arm."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from serving.engine.pool import CANDIDATE, CHAMPION, Endpoint, EnginePool, sticky_key
from tests.serving.fakes import gateway_app


def _pool(share: float) -> EnginePool:
    pool = EnginePool()
    pool.endpoints = [Endpoint("http://a", "v1"), Endpoint("http://b", "v1")]
    pool.start_canary([Endpoint("http://c", "v2")], share)
    return pool


def _conversation(i: int, turns: int) -> list[dict]:
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"question {i}"}]
    for t in range(turns):
        msgs += [
            {"role": "assistant", "content": f"answer {t}"},
            {"role": "user", "content": f"follow-up {t}"},
        ]
    return msgs


def test_a_sticky_share_of_conversations_goes_to_the_candidate():
    pool = _pool(0.2)
    arms = [pool.pick(sticky_key("key-1", _conversation(i, 0))).arm for i in range(2000)]
    assert 0.16 <= arms.count(CANDIDATE) / len(arms) <= 0.24
    # every later turn of a conversation stays on the arm its first turn got; other keys are split anew
    for i in range(200):
        first = pool.arm_for(sticky_key("key-1", _conversation(i, 0)))
        assert all(pool.arm_for(sticky_key("key-1", _conversation(i, t))) == first for t in range(1, 4))
    assert pool.version == "v1"  # what serves is the champion's version


def test_no_healthy_candidate_means_the_champion_and_stop_gives_the_endpoints_back():
    pool = _pool(0.99)
    cand = [e for e in pool.endpoints if e.arm == CANDIDATE]
    cand[0].healthy = False
    assert {pool.pick(sticky_key("k", _conversation(i, 0))).arm for i in range(50)} == {CHAMPION}
    assert pool.stop_canary() == cand and pool.canary_share == 0
    assert [e.url for e in pool.endpoints] == ["http://a", "http://b"]
    with pytest.raises(ValueError, match="between 0 and 1"):
        pool.start_canary(cand, 1.0)


def _engine(request: httpx.Request) -> httpx.Response:
    """A fake engine that answers with its own URL (so a row shows which arm's engine answered it)."""
    return httpx.Response(
        200,
        json={
            "id": "e",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": str(request.url)}}],
            "usage": {},
        },
    )


def test_each_request_row_records_the_arm_that_answered_it():
    app, sink = gateway_app(_engine)
    pool: EnginePool = app.state.pool
    pool.start_canary([Endpoint("http://candidate-engine", "v2")], 0.5)

    async def ask(i: int) -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            body = {"model": "keel", "messages": _conversation(i, 0)}
            r = await c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer good"})
            assert r.status_code == 200, r.text

    async def main() -> None:
        for i in range(40):
            await ask(i)

    asyncio.run(main())
    arms = {r.arm for r in sink.records}
    assert arms == {CHAMPION, CANDIDATE}
    for r in sink.records:
        assert (
            (r.arm == CANDIDATE) == (r.checkpoint_version == "v2") == ("candidate-engine" in r.response_text)
        )


def test_the_clients_end_user_splits_one_key_person_by_person():
    """One API key serving many people (the simulation, a company backend) names each with OpenAI's `user`:
    people who open with the same question land on both arms, and each stays on one arm."""
    pool = _pool(0.3)
    same = _conversation(7, 0)
    arms = [pool.arm_for(sticky_key("key-1", same, f"person-{u}")) for u in range(2000)]
    assert 0.26 <= arms.count(CANDIDATE) / len(arms) <= 0.34
    for u in range(100):
        first = pool.arm_for(sticky_key("key-1", _conversation(7, 0), f"person-{u}"))
        assert all(
            pool.arm_for(sticky_key("key-1", _conversation(7, t), f"person-{u}")) == first for t in (1, 2)
        )
    # without `user` the question alone decides, as before
    assert len({pool.arm_for(sticky_key("key-1", same)) for _ in range(5)}) == 1


def test_the_gateway_splits_by_the_requests_user_field():
    app, sink = gateway_app(_engine)
    pool: EnginePool = app.state.pool
    pool.start_canary([Endpoint("http://candidate-engine", "v2")], 0.5)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            for u in range(40):  # forty people, one question
                body = {"model": "keel", "messages": _conversation(1, 0), "user": f"person-{u}"}
                r = await c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer good"})
                assert r.status_code == 200, r.text

    asyncio.run(main())
    assert {r.arm for r in sink.records} == {CHAMPION, CANDIDATE}
    assert all(r.params.get("user", "").startswith("person-") for r in sink.records)  # kept on the row
