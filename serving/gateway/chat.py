"""Chat completions: validate, authenticate, proxy to an engine (plain or SSE), and record every request."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from serving.config import GatewayConfig
from serving.engine.client import EngineClient
from serving.engine.pool import Endpoint, EnginePool, sticky_key
from serving.errors import APIError, from_engine
from serving.gateway.auth import KeyVerifier, authenticate
from serving.gateway.body import client_closed, json_object, read_body, unless_client_leaves
from serving.gateway.recording import Recording
from serving.protocol import ChatCompletionRequest
from serving.records import RecordError, RecordSink, RequestRecord, RouteInfo

log = logging.getLogger("keel.gateway")

PASS_THROUGH_PARAMS = (
    "n",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "stream",
    "user",  # the client's end user: kept on the row, and part of the canary's sticky key
)


def new_request_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


@dataclass
class RouteDecision:
    """What a router (if any) decided before generation: the route's facts (logged as they are) and what
    to do with the request. ``reply`` set → answer without the engine."""

    info: RouteInfo = field(default_factory=RouteInfo)
    messages: list[dict[str, Any]] | None = (
        None  # messages to send to the engine (e.g. with retrieved context)
    )
    reply: str | None = None
    sources_text: str = ""  # appended to the engine's answer when it has sources
    params: dict[str, Any] = field(default_factory=dict)  # the route's sampling defaults; the request wins

    @property
    def route(self) -> str:
        return self.info.route

    @property
    def sources(self) -> list[dict[str, Any]]:
        return self.info.sources

    def keel(self, sources: list[dict[str, Any]]) -> dict[str, Any]:
        """The response's `keel` block; `lexical_only` only while the dense index is incomplete."""
        return {"route": self.route, "sources": sources} | (
            {"lexical_only": True} if self.info.lexical_only else {}
        )


Router = Callable[[list[dict[str, Any]]], Awaitable[RouteDecision]]


async def _sse_data(upstream: httpx.Response) -> AsyncIterator[bytes]:
    """The ``data:`` payloads of an SSE stream, split on raw bytes (no text decoding per line)."""
    buf = b""
    async for raw in upstream.aiter_bytes():
        buf += raw
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                break
            event, buf = buf[:end], buf[end + 2 :]
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    yield line[5:].strip()
    for line in buf.split(b"\n"):
        if line.startswith(b"data:"):
            yield line[5:].strip()


def _take_prompt_text(record: RequestRecord, data: dict[str, Any]) -> str | None:
    """The engine's rendered prompt; removed from the response unless the client asked for it."""
    if record.params.get("return_prompt_text"):
        return data.get("prompt_text")
    return data.pop("prompt_text", None)


def format_error_event(err: APIError) -> bytes:
    return b"data: " + orjson.dumps(err.body()) + b"\n\n"


def _journal(recording: Recording) -> None:
    """Submit a streamed answer's row before its [DONE]. A row the sink cannot keep (a full disk) is an
    APIError, so the client gets an error event in place of [DONE]: the stream does not end as if whole."""
    try:
        recording.submit()
    except RecordError as e:
        raise APIError(e.status, str(e), e.code) from e


class ChatService:
    """The logic behind POST /v1/chat/completions. Built once at start and kept on app.state."""

    def __init__(
        self,
        pool: EnginePool,
        sink: RecordSink,
        verifier: KeyVerifier,
        config: GatewayConfig,
        client: httpx.AsyncClient,
        router: Router | None = None,
    ):
        self.pool = pool
        self.sink = sink
        self.verifier = verifier
        self.config = config
        self.client = client
        self.engine = EngineClient(pool, client, config.served_model_name, config.request_timeout_s)
        self.router = router

    # ---- entry -------------------------------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        t0 = time.perf_counter()
        rid = new_request_id()
        headers = {"x-request-id": rid}
        record = RequestRecord(request_id=rid, endpoint="/v1/chat/completions")
        try:
            principal = authenticate(self.verifier, request.headers.get("authorization"))
            record.key_id = principal.key_id
            body = await self._read_json(request)
            req = self._validate(body)
            record.model = req.model
            record.stream = req.stream
            record.messages = [m.model_dump(exclude_none=True) for m in req.messages]
            record.params = {k: body[k] for k in PASS_THROUGH_PARAMS if k in body}
            record.regenerate_of = request.headers.get("x-keel-regenerate-of")
            if req.model != self.config.served_model_name:
                raise APIError(
                    404,
                    f"model '{req.model}' does not exist; use '{self.config.served_model_name}'",
                    "model_not_found",
                    "model",
                )
            decision = await self._route(record)
            # routing can take a while: a client gone by now gets no answer (and the engine no work)
            if await request.is_disconnected():
                raise client_closed("before the answer")
            payload = dict(body)
            defaults = {k: v for k, v in decision.params.items() if payload.get(k) is None}
            if defaults:  # per-route sampling defaults (router.generation), logged with the request
                payload.update(defaults)
                record.route_info.applied_params = defaults
            if decision.messages is not None:
                payload["messages"] = decision.messages
            if decision.reply is not None:
                return self._canned(record, req, decision, t0, headers)
            # training rows are built from what the engine saw: its messages and its rendered prompt
            record.engine_messages = payload["messages"]
            if body.get("return_prompt_text"):
                record.params["return_prompt_text"] = True
            payload["return_prompt_text"] = True
            if req.stream:
                return await self._open_stream(record, req, payload, decision, t0, headers)
            return await self._complete(request, record, payload, decision, t0, headers)
        except APIError as e:
            record.latency_ms = _ms(t0)
            Recording(self.sink, record).submit(e.status, e.message)
            return e.response(headers)

    async def _read_json(self, request: Request) -> dict[str, Any]:
        return json_object(await read_body(request, self.config.max_body_bytes, self.config.body_timeout_s))

    @staticmethod
    def _validate(body: dict[str, Any]) -> ChatCompletionRequest:
        try:
            return ChatCompletionRequest.model_validate(body)
        except ValidationError as e:
            err = e.errors()[0]
            param = ".".join(str(p) for p in err.get("loc", ()))
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            raise APIError(
                400, f"invalid '{param}': {msg}" if param else msg, "invalid_request", param or None
            ) from e

    async def _route(self, record: RequestRecord) -> RouteDecision:
        if self.router is None:
            return RouteDecision()
        decision = await self.router(record.messages or [])
        record.route_info = decision.info
        return decision

    # ---- responses without the engine ---------------------------------------------------------------------
    def _canned(
        self,
        record: RequestRecord,
        req: ChatCompletionRequest,
        decision: RouteDecision,
        t0: float,
        headers: dict,
    ) -> Response:
        text = decision.reply or ""
        created = int(time.time())
        record.response_text = text
        record.finish_reason = "stop"
        record.choices = [{"index": i, "text": text, "finish_reason": "stop"} for i in range(req.n)]
        record.checkpoint_version = None
        record.latency_ms = record.ttft_ms = _ms(t0)
        extra = {"keel": decision.keel(decision.sources)}
        recording = Recording(self.sink, record)
        if not req.stream:
            recording.submit()
            body = {
                "id": record.request_id,
                "object": "chat.completion",
                "created": created,
                "model": req.model,
                "choices": [
                    {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    for i in range(req.n)
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                **extra,
            }
            return Response(orjson.dumps(body), media_type="application/json", headers=headers)

        def chunk(choices: list, **more: Any) -> bytes:
            c = {
                "id": record.request_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.model,
            }
            return b"data: " + orjson.dumps({**c, "choices": choices, **more}) + b"\n\n"

        async def events() -> AsyncIterator[bytes]:
            with recording.on_exit():
                for i in range(req.n):
                    yield chunk(
                        [{"index": i, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]
                    )
                yield chunk(
                    [{"index": i, "delta": {}, "finish_reason": "stop"} for i in range(req.n)], **extra
                )
                try:
                    _journal(recording)
                except APIError as e:
                    yield format_error_event(e)
                    return
                yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    # ---- non-streaming ---------------------------------------------------------------------------------------
    async def _complete(
        self,
        request: Request,
        record: RequestRecord,
        payload: dict,
        decision: RouteDecision,
        t0: float,
        headers: dict,
    ) -> Response:
        async def fetch() -> tuple[httpx.Response, bytes, float]:
            async with self.pool.lease(
                sticky=sticky_key(record.key_id, record.messages, record.params.get("user"))
            ) as ep:
                record.checkpoint_version, record.engine_url, record.arm = ep.version, ep.url, ep.arm
                record.meta.dispatched_at = time.time()
                t_gen = time.perf_counter()
                try:
                    upstream = await self._send_upstream(ep, payload, record)
                    try:
                        return upstream, await upstream.aread(), t_gen
                    finally:
                        await upstream.aclose()
                except httpx.HTTPError as e:
                    raise APIError(502, f"engine request failed: {type(e).__name__}", "engine_error") from e

        # nothing reads the connection while the engine works: a client that leaves meanwhile is a 499
        # row (not a 200 nobody received), and cancelling the fetch closes the engine request (vLLM aborts)
        upstream, raw, t_gen = await unless_client_leaves(request, fetch(), "while the engine was answering")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = raw.decode("utf-8", "replace")
        if upstream.status_code >= 400 or not isinstance(data, dict):
            raise from_engine(upstream.status_code if upstream.status_code >= 400 else 502, data)
        data["id"] = record.request_id
        record.engine_prompt = _take_prompt_text(record, data)
        choices = data.get("choices") or []
        texts = [((c.get("message") or {}).get("content") or "") for c in choices]
        record.completion_text = texts[0] if texts else ""
        if decision.sources and choices:
            data["keel"] = decision.keel(decision.sources)
            suffix = decision.sources_text
            if suffix:
                for c, t in zip(choices, texts, strict=False):
                    c["message"]["content"] = t + suffix
                texts = [t + suffix for t in texts]
                record.appended_text = suffix
        elif self.router is not None:
            data["keel"] = decision.keel([])
        record.choices = [
            {"index": c.get("index", i), "text": t, "finish_reason": c.get("finish_reason")}
            for i, (c, t) in enumerate(zip(choices, texts, strict=False))
        ]
        record.response_text = texts[0] if texts else ""
        record.finish_reason = choices[0].get("finish_reason") if choices else None
        usage = data.get("usage") or {}
        record.prompt_tokens = usage.get("prompt_tokens")
        record.completion_tokens = usage.get("completion_tokens")
        record.generation_ms = _ms(t_gen)
        record.latency_ms = record.ttft_ms = _ms(t0)
        Recording(self.sink, record).submit()  # journaled before the client sees the answer
        return Response(orjson.dumps(data), media_type="application/json", headers=headers)

    async def _send_upstream(self, ep: Endpoint, payload: dict, record: RequestRecord) -> httpx.Response:
        """POST to the engine and return once its response headers arrived (the body is still to read)."""

        def retried() -> None:
            record.meta.engine_retries = 1

        return await self.engine.send(ep, payload, timeout_s=self.config.request_timeout_s, on_retry=retried)

    # ---- streaming --------------------------------------------------------------------------------------------
    async def _open_stream(
        self,
        record: RequestRecord,
        req: ChatCompletionRequest,
        payload: dict,
        decision: RouteDecision,
        t0: float,
        headers: dict,
    ) -> Response:
        client_wants_usage = bool(req.stream_options and req.stream_options.include_usage)
        payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        stack = AsyncExitStack()
        try:
            lease = self.pool.lease(
                sticky=sticky_key(record.key_id, record.messages, record.params.get("user"))
            )
            ep: Endpoint = await stack.enter_async_context(lease)
            record.checkpoint_version, record.engine_url, record.arm = ep.version, ep.url, ep.arm
            record.meta.dispatched_at = time.time()
            t_gen = time.perf_counter()
            try:
                upstream = await self._send_upstream(ep, payload, record)
            except httpx.HTTPError as e:
                raise APIError(502, f"engine request failed: {type(e).__name__}", "engine_error") from e
            stack.push_async_callback(upstream.aclose)
            if upstream.status_code >= 400:
                raw = await upstream.aread()
                try:
                    data: Any = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    data = raw.decode("utf-8", "replace")
                raise from_engine(upstream.status_code, data)
        except BaseException:
            await stack.aclose()
            raise
        events = self._relay(record, upstream, stack, decision, client_wants_usage, t0, t_gen)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    async def _relay(
        self,
        record: RequestRecord,
        upstream: httpx.Response,
        stack: AsyncExitStack,
        decision: RouteDecision,
        client_wants_usage: bool,
        t0: float,
        t_gen: float,
    ) -> AsyncIterator[bytes]:
        texts: dict[int, list[str]] = {}
        finish: dict[int, str | None] = {}
        done = False
        suffix = decision.sources_text if decision.sources else ""
        engine_id: bytes | None = None
        our_id = record.request_id.encode()
        recording = Recording(
            self.sink, record, lambda: self._finish_stream(record, texts, finish, t0, t_gen)
        )
        try:
            with recording.on_exit():
                try:
                    async for data in _sse_data(upstream):
                        if data == b"[DONE]":
                            done = True
                            break
                        chunk = orjson.loads(data)
                        if "error" in chunk and "choices" not in chunk:
                            err = from_engine(500, chunk)
                            record.status_code, record.error = err.status, err.message
                            yield format_error_event(err)
                            continue
                        if engine_id is None and isinstance(chunk.get("id"), str):
                            engine_id = chunk["id"].encode()
                        modified = False
                        if isinstance(chunk.get("prompt_text"), str):  # the first chunk only
                            record.engine_prompt = _take_prompt_text(record, chunk)
                            modified = True
                        usage = chunk.get("usage")
                        if usage:
                            record.prompt_tokens = usage.get("prompt_tokens")
                            record.completion_tokens = usage.get("completion_tokens")
                        choices = chunk.get("choices") or []
                        for c in choices:
                            i = c.get("index", 0)
                            delta = (c.get("delta") or {}).get("content")
                            if delta:
                                texts.setdefault(i, []).append(delta)
                                if record.ttft_ms is None:
                                    record.ttft_ms = _ms(t0)
                            if c.get("finish_reason"):
                                finish[i] = c["finish_reason"]
                                if suffix:  # the sources list is the last content of each choice
                                    c.setdefault("delta", {})["content"] = (
                                        c["delta"].get("content") or ""
                                    ) + suffix
                                    texts.setdefault(i, []).append(suffix)
                                    record.appended_text = suffix
                                    modified = True
                        if not choices and not client_wants_usage:
                            continue
                        if self.router is not None and (
                            not choices or any(c.get("finish_reason") for c in choices)
                        ):
                            chunk["keel"] = decision.keel(decision.sources)
                            modified = True
                        if modified or engine_id is None:
                            chunk["id"] = record.request_id
                            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                        else:  # the common token chunk: forward the engine's bytes, only the id swapped
                            yield b"data: " + data.replace(engine_id, our_id) + b"\n\n"
                    if not done and record.error is None:
                        raise APIError(502, "engine closed the stream early", "engine_error")
                    _journal(recording)  # journaled before [DONE] reaches the client
                    yield b"data: [DONE]\n\n"
                except (httpx.HTTPError, APIError) as e:
                    err = (
                        e
                        if isinstance(e, APIError)
                        else APIError(502, f"engine stream failed: {type(e).__name__}", "engine_error")
                    )
                    with contextlib.suppress(RecordError):  # the sink logged and counted it
                        recording.submit(err.status, err.message)
                    yield format_error_event(err)
        finally:
            await stack.aclose()

    @staticmethod
    def _finish_stream(
        record: RequestRecord,
        texts: dict[int, list[str]],
        finish: dict[int, str | None],
        t0: float,
        t_gen: float,
    ) -> None:
        joined = {i: "".join(parts) for i, parts in texts.items()}
        indices = sorted(set(joined) | set(finish))
        record.choices = [
            {"index": i, "text": joined.get(i, ""), "finish_reason": finish.get(i)} for i in indices
        ]
        record.response_text = joined.get(0, "")
        own, tail = record.response_text, record.appended_text or ""
        record.completion_text = own[: -len(tail)] if tail and own.endswith(tail) else own
        record.finish_reason = finish.get(0)
        record.generation_ms = _ms(t_gen)
        record.latency_ms = _ms(t0)
