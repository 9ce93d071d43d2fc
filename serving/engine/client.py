"""The one way to call an engine's OpenAI API: lease, timeout and the single retry-before-answer rule.

Every caller (the gateway, the router's LLM classifier, swap warm-ups, the candidate sampler) sends
through ``EngineClient``, so they all count against the balancer and the drain, time out the same way,
and never generate twice.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from serving.engine.pool import Endpoint, EnginePool

log = logging.getLogger("keel.engine")

# The engine never answered: it refused the connection, or closed a pooled keep-alive connection just as
# the request went out on it. Nothing was generated, so one more try on a fresh connection is safe and
# the client never sees the race. Once the engine has answered, nothing is ever resent.
UNANSWERED = (httpx.ConnectError, httpx.RemoteProtocolError)


class EngineReply:
    """A non-streamed answer: status, the decoded JSON (or text), and the endpoint that produced it."""

    def __init__(self, endpoint: Endpoint, status: int, data: Any):
        self.endpoint = endpoint
        self.status = status
        self.data = data

    @property
    def ok(self) -> bool:
        return self.status < 400 and isinstance(self.data, dict)

    def text(self, choice: int = 0) -> str:
        """The message content of one choice ('' when there is none)."""
        choices = self.data.get("choices") if isinstance(self.data, dict) else None
        if not choices or len(choices) <= choice:
            return ""
        return (choices[choice].get("message") or {}).get("content") or ""


def decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


class EngineClient:
    def __init__(self, pool: EnginePool, http: httpx.AsyncClient, served_name: str, timeout_s: float = 600.0):
        self.pool = pool
        self.http = http
        self.served_name = served_name
        self.timeout_s = timeout_s

    async def send(
        self,
        ep: Endpoint,
        payload: dict[str, Any],
        path: str = "/v1/chat/completions",
        timeout_s: float | None = None,
        on_retry=None,
    ) -> httpx.Response:
        """POST and return once the response headers arrived (the body is still to read: ``aread`` or stream
        it, then ``aclose``). A request the engine never answered is sent once more."""

        def build() -> httpx.Request:
            return self.http.build_request(
                "POST", f"{ep.url}{path}", json=payload, timeout=timeout_s or self.timeout_s
            )

        try:
            return await self.http.send(build(), stream=True)
        except UNANSWERED as e:
            log.warning("engine %s did not answer (%r); retrying once", ep.url, e)
            if on_retry is not None:
                on_retry()
            return await self.http.send(build(), stream=True)

    @asynccontextmanager
    async def stream(
        self, payload: dict[str, Any], endpoint: Endpoint | None = None, **kw: Any
    ) -> AsyncIterator[tuple[Endpoint, httpx.Response]]:
        """Lease an endpoint (or count against the given one) for as long as the response is read."""
        async with self.pool.lease(endpoint=endpoint) as ep:
            upstream = await self.send(ep, payload, **kw)
            try:
                yield ep, upstream
            finally:
                await upstream.aclose()

    async def complete(
        self,
        payload: dict[str, Any],
        endpoint: Endpoint | None = None,
        counted: bool = True,
        **kw: Any,
    ) -> EngineReply:
        """One non-streamed request. ``counted=False`` for an endpoint not in the pool yet (a warm-up)."""
        body = {"model": self.served_name, **payload, "stream": False}
        if not counted:
            assert endpoint is not None, "an uncounted request needs its endpoint"
            upstream = await self.send(endpoint, body, **kw)
            try:
                return EngineReply(endpoint, upstream.status_code, decode(await upstream.aread()))
            finally:
                await upstream.aclose()
        async with self.stream(body, endpoint=endpoint, **kw) as (ep, upstream):
            return EngineReply(ep, upstream.status_code, decode(await upstream.aread()))
