"""Gateway logic around a fake engine (allowed for unit tests): failures mid-stream, unreachable engine."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import FastAPI

from serving.engine.pool import Endpoint, EnginePool
from serving.errors import APIError
from tests.serving.fakes import Sink, gateway_app


def chunk(text, finish=None):
    return "data: " + json.dumps(
        {"id": "x", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    )


def make_app(engine_handler) -> tuple[FastAPI, Sink]:
    return gateway_app(engine_handler)


async def call(app, body):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        return await c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer good"})


BODY = {"model": "keel", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_engine_dying_mid_stream_ends_with_an_error_event_and_a_row():
    async def engine(request):
        async def body():
            yield (chunk("Hel") + "\n\n").encode()
            raise httpx.ReadError("engine died")

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    app, sink = make_app(engine)
    r = asyncio.run(call(app, BODY))
    assert r.status_code == 200
    events = [ln[6:] for ln in r.text.splitlines() if ln.startswith("data: ")]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Hel"
    assert json.loads(events[-1])["error"]["type"] == "server_error"
    [rec] = sink.records
    assert rec.status_code == 502 and rec.response_text == "Hel" and rec.checkpoint_version == "v1"


def test_stream_closed_without_done_is_an_error():
    async def engine(request):
        return httpx.Response(200, text=chunk("a") + "\n\n", headers={"content-type": "text/event-stream"})

    app, sink = make_app(engine)
    r = asyncio.run(call(app, BODY))
    assert '"error"' in r.text.splitlines()[-2] or '"error"' in r.text
    assert sink.records[0].status_code == 502


def test_unreachable_engine_is_502_json():
    async def engine(request):
        raise httpx.ConnectError("refused")

    app, sink = make_app(engine)
    for stream in (False, True):
        r = asyncio.run(call(app, {**BODY, "stream": stream}))
        assert r.status_code == 502 and r.json()["error"]["code"] == "engine_error"
    assert [rec.status_code for rec in sink.records] == [502, 502]


def completion(text="ok"):
    return {
        "id": "x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }


@pytest.mark.parametrize("stream", [False, True])
def test_request_the_engine_never_answered_is_sent_once_more(stream):
    """A pooled connection the engine closed just as the request went out: the client must not see it."""
    calls = []

    async def engine(request):
        calls.append(json.loads(request.content))
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        if stream:
            return httpx.Response(
                200,
                text=chunk("ok") + "\n\n" + chunk("", "stop") + "\n\ndata: [DONE]\n\n",
                headers={"content-type": "text/event-stream"},
            )
        return httpx.Response(200, json=completion())

    app, sink = make_app(engine)
    r = asyncio.run(call(app, {**BODY, "stream": stream}))
    assert r.status_code == 200
    text = (
        "".join(
            json.loads(ln[6:])["choices"][0]["delta"].get("content") or ""
            for ln in r.text.splitlines()
            if ln.startswith("data: {") and json.loads(ln[6:]).get("choices")
        )
        if stream
        else r.json()["choices"][0]["message"]["content"]
    )
    assert text == "ok"
    assert len(calls) == 2 and calls[0] == calls[1]
    [rec] = sink.records
    assert rec.status_code == 200 and rec.meta.engine_retries == 1


def test_engine_that_never_answers_twice_is_502_not_a_loop():
    calls = []

    async def engine(request):
        calls.append(1)
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    app, sink = make_app(engine)
    r = asyncio.run(call(app, {**BODY, "stream": False}))
    assert r.status_code == 502 and r.json()["error"]["code"] == "engine_error"
    assert len(calls) == 2 and sink.records[0].status_code == 502


def test_engine_failing_after_its_answer_began_is_not_sent_again():
    """Once the engine answered, generation happened: a retry would run it twice. The client gets a 502."""
    calls = []

    async def engine(request):
        calls.append(1)

        async def body():
            yield b'{"id": "x", "choi'
            raise httpx.ReadError("engine died")

        return httpx.Response(200, content=body(), headers={"content-type": "application/json"})

    app, sink = make_app(engine)
    r = asyncio.run(call(app, {**BODY, "stream": False}))
    assert r.status_code == 502 and len(calls) == 1


def test_no_ready_engine_is_503():
    app, sink = make_app(lambda r: httpx.Response(200))
    app.state.pool.endpoints[0].healthy = False
    r = asyncio.run(call(app, {**BODY, "stream": False}))
    assert r.status_code == 503 and sink.records[0].status_code == 503


def test_pool_prefers_least_outstanding_and_holds_during_swap():
    async def scenario():
        pool = EnginePool()
        a, b = Endpoint(url="a", version="v"), Endpoint(url="b", version="v")
        pool.endpoints = [a, b]
        async with pool.lease() as first, pool.lease() as second:
            assert {first.url, second.url} == {"a", "b"}
        pool.hold()
        with pytest.raises(APIError):
            async with pool.lease(wait_s=0.05):
                pass
        pool.release()
        async with pool.lease() as ep:
            assert ep.outstanding == 1

    asyncio.run(scenario())


def test_route_sampling_defaults_fill_only_what_the_request_left_out():
    """router.generation: the route's defaults reach the engine; a value the request set itself wins."""
    from serving.gateway.chat import RouteDecision
    from serving.records import RouteInfo

    sent: list[dict] = []

    def engine(req: httpx.Request) -> httpx.Response:
        sent.append(json.loads(req.content))
        answer = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}
        return httpx.Response(
            200, json={**answer, "choices": [{**answer["choices"][0], "finish_reason": "stop"}]}
        )

    async def route(messages):
        return RouteDecision(
            RouteInfo(route="domain"), params={"repetition_penalty": 1.25, "max_tokens": 300}
        )

    app, sink = gateway_app(engine, router=route)
    asked = {"model": "keel", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    assert asyncio.run(call(app, asked)).status_code == 200
    assert asyncio.run(call(app, {**asked, "repetition_penalty": 1.0, "max_tokens": None})).status_code == 200
    first, second = sent
    assert (first["repetition_penalty"], first["max_tokens"], first["temperature"]) == (1.25, 300, 0)
    assert (second["repetition_penalty"], second["max_tokens"]) == (1.0, 300)
    rows = sink.wait(2)
    assert rows[0].route_info.applied_params == {"repetition_penalty": 1.25, "max_tokens": 300}
    assert rows[1].route_info.applied_params == {"max_tokens": 300}
