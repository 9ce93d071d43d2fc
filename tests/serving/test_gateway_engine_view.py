"""The request log keeps what the engine saw and produced beside what the client sent and saw.

A fake engine (allowed in unit tests) answers like vLLM with `return_prompt_text`; a fake router sends the
request down the domain route with a system prompt and a sources suffix.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import FastAPI

from serving.gateway.chat import RouteDecision
from serving.records import RouteInfo
from tests.serving.fakes import Sink, gateway_app

SYSTEM = {"role": "system", "content": "Answer from these documents:\n[1] TiDB listens on 4000."}
SUFFIX = "\n\nSources:\n[1] Ports (ports.md)"
USER = [{"role": "user", "content": "Which port?"}]
RENDERED = "<|im_start|>system\nAnswer from these documents ...<|im_start|>assistant\n"


async def domain_router(messages):
    return RouteDecision(
        RouteInfo(
            route="domain",
            confidence=0.9,
            sources=[{"index": 1, "path": "ports.md", "title": "Ports", "heading": "Ports"}],
        ),
        messages=[SYSTEM, *messages],
        sources_text=SUFFIX,
    )


def make_app(seen: list[dict]) -> tuple[FastAPI, Sink]:
    async def engine(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        prompt = RENDERED if body.get("return_prompt_text") else None
        if body.get("stream"):
            events = [
                {
                    "id": "chatcmpl-engine-0f3a",
                    "prompt_text": prompt,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                },
                {"id": "chatcmpl-engine-0f3a", "choices": [{"index": 0, "delta": {"content": "Port "}}]},
                {
                    "id": "chatcmpl-engine-0f3a",
                    "choices": [{"index": 0, "delta": {"content": "4000."}, "finish_reason": "stop"}],
                },
            ]
            text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})
        return httpx.Response(
            200,
            json={
                "id": "chatcmpl-engine-0f3a",
                "prompt_text": prompt,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Port 4000."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 30, "completion_tokens": 3},
            },
        )

    return gateway_app(engine, router=domain_router)


async def call(app: FastAPI, body: dict) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        return await c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer good"})


def client_text(r: httpx.Response, stream: bool) -> tuple[str, list[dict]]:
    if not stream:
        data = r.json()
        return data["choices"][0]["message"]["content"], [data]
    events = [json.loads(ln[6:]) for ln in r.text.splitlines() if ln.startswith("data: {")]
    return "".join((c["delta"].get("content") or "") for e in events for c in e["choices"]), events


@pytest.mark.parametrize("stream", [False, True])
def test_row_keeps_engine_prompt_and_model_text_apart_from_the_suffix(stream):
    seen: list[dict] = []
    app, sink = make_app(seen)
    r = asyncio.run(call(app, {"model": "keel", "messages": USER, "stream": stream, "max_tokens": 8}))
    assert r.status_code == 200
    text, bodies = client_text(r, stream)
    assert text == "Port 4000." + SUFFIX  # the client still sees the sources list
    assert all("prompt_text" not in b for b in bodies)  # ...but not the engine's prompt, unasked
    [rec] = sink.records
    [sent] = seen
    assert rec.messages == USER
    assert rec.engine_messages == sent["messages"] == [SYSTEM, *USER]
    assert rec.engine_prompt == RENDERED
    assert rec.completion_text == "Port 4000." and rec.appended_text == SUFFIX
    assert rec.response_text == text
    assert "return_prompt_text" not in rec.params


@pytest.mark.parametrize("stream", [False, True])
def test_client_that_asks_for_the_prompt_text_gets_it(stream):
    app, sink = make_app([])
    body = {"model": "keel", "messages": USER, "stream": stream, "return_prompt_text": True}
    r = asyncio.run(call(app, body))
    _, bodies = client_text(r, stream)
    assert [b["prompt_text"] for b in bodies if "prompt_text" in b] == [RENDERED]
    assert sink.records[0].engine_prompt == RENDERED


def test_engine_view_lands_in_the_request_log(tmp_path):
    from keel.store.db import Database
    from keel.store.requestlog import RequestLogWriter, list_requests

    app, sink = make_app([])
    asyncio.run(call(app, {"model": "keel", "messages": USER, "max_tokens": 8}))
    db = Database(tmp_path / "keel.duckdb")
    writer = RequestLogWriter(db, tmp_path / "journal")
    writer.start()
    writer.submit(sink.records[0])
    writer.close()
    [row] = list_requests(db, [sink.records[0].request_id])
    assert row["engine_messages"] == [SYSTEM, *USER] and row["messages"] == USER
    assert row["engine_prompt"] == RENDERED
    assert (row["completion_text"], row["appended_text"]) == ("Port 4000.", SUFFIX)
    # the route's facts arrive whole (RouteInfo), the flat columns derived from them, and the console
    # names the cited page (it read a `meta` key nothing wrote before RouteInfo)
    assert row["route"] == row["route_info"]["route"] == "domain" and row["route_confidence"] == 0.9
    assert row["route_info"]["sources"][0]["title"] == "Ports"
    from keel.store.console import RequestFilter, recent_requests

    [item] = recent_requests(db, RequestFilter())["items"]
    assert item["sources"] == ["Ports"]
    db.close()


def test_records_from_before_route_info_replay_into_it():
    """A journal line written before RouteInfo (flat columns, routing keys in meta) loses nothing."""
    from serving.records import RequestRecord

    old = {
        "request_id": "r-old",
        "route": "domain",
        "route_confidence": 0.7,
        "retrieved": [{"id": "a.md::1", "score": 0.5}],
        "retrieval_ms": 12.0,
        "meta": {
            "fallback": True,
            "retrieval_error": "x",
            "route_params": {"max_tokens": 9},
            "dispatched_at": 1.0,
        },
    }
    rec = RequestRecord.model_validate(old)
    assert (rec.route, rec.route_info.confidence, rec.route_info.retrieval_ms) == ("domain", 0.7, 12.0)
    row = rec.model_dump()  # the flat columns the row stores, derived from route_info
    assert (row["route"], row["route_confidence"], row["retrieved"]) == ("domain", 0.7, old["retrieved"])
    assert rec.route_info.fallback and rec.route_info.retrieval_error == "x"
    assert rec.route_info.applied_params == {"max_tokens": 9} and rec.meta.dispatched_at == 1.0
    assert RequestRecord.model_validate_json(rec.model_dump_json()) == rec
