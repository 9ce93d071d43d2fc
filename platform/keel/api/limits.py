"""A size limit on what the admin surfaces read: a body over ``ADMIN_MAX_BODY`` is a 413 in OpenAI's
shape before any route parses it (every admin body is a few fields; 8 MB was accepted before).

The gateway under /v1 has its own limit (``gateway.max_body_bytes``) and streams; it is not touched.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import APIError

ADMIN_MAX_BODY = 1 << 20  # 1 MiB: an admin body is a handful of fields and paths
PREFIXES = ("/admin/", "/console/")


def _too_large(limit: int) -> APIError:
    return APIError(413, f"request body larger than {limit} bytes", "body_too_large")


class AdminBodyLimit:
    """Pure ASGI: a declared Content-Length over the limit is refused at once; a body without one is read
    up to the limit and refused as soon as it passes it, then handed on whole to the route."""

    def __init__(self, app: ASGIApp, limit: int = ADMIN_MAX_BODY):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIXES):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        try:
            declared = int(length) if length is not None else None
        except ValueError:
            declared = None
        if declared is not None and declared > self.limit:
            await _too_large(self.limit).response()(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                await _too_large(self.limit).response()(scope, receive, send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        await self.app(
            scope,
            _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive),
            send,
        )


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A ``receive`` that hands out ``messages`` first, then defers to ``then`` (disconnects)."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
