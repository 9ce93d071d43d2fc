"""Reading a request body with a size limit, a time limit and a clear status for a client that left.

uvicorn waits for a declared body for as long as the connection stays open, and a client that closes
mid-body surfaces as Starlette's `ClientDisconnect` out of the handler (a traceback, no log row). Here
both become `APIError`s the handler logs like any other refusal: 408 (too slow), 499 (gone: nginx's
"client closed request"; the client never sees it, the request log does).

A non-streamed answer has the same problem later: nothing reads the connection while the engine works,
so a client that left was logged 200 with an answer nobody received. ``unless_client_leaves`` races the
work against the connection's ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from serving.errors import APIError

CLIENT_CLOSED = 499
T = TypeVar("T")


def client_closed(when: str) -> APIError:
    return APIError(CLIENT_CLOSED, f"client closed the connection {when}", "client_closed")


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body is larger than {limit} bytes", "body_too_large")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise APIError(413, f"request body is larger than {limit} bytes", "body_too_large")
                chunks.append(chunk)
    except TimeoutError as e:
        raise APIError(
            408, f"request body not received within {timeout_s:g} s ({size} bytes came)", "body_timeout"
        ) from e
    except ClientDisconnect as e:
        raise client_closed(f"before its body was complete ({size} bytes came)") from e
    return b"".join(chunks)


async def _disconnect(request: Request) -> bool:
    """Returns once the client has gone (True); False if the server cannot tell (then nothing is raced)."""
    try:
        while True:  # after the body, the server's receive() waits until the connection closes
            if (await request.receive()).get("type") == "http.disconnect":
                return True
    except Exception:
        return False


async def unless_client_leaves(request: Request, work: Awaitable[T], when: str) -> T:
    """``work``'s result, or ``client_closed(when)`` as soon as the client disconnects. ``work`` is then
    cancelled: for an engine request that closes the upstream connection, and vLLM aborts the generation.
    The body must have been read already (this consumes the request's later receive messages)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and not watcher.result():
            await task  # the server cannot report a disconnect: just the work
    except BaseException:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():  # the answer was complete first: the usual path
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise client_closed(when)


def json_object(raw: bytes) -> dict:
    """The body as a JSON object, or the one 400 every endpoint answers for an empty, broken or non-object body."""
    if not raw:
        raise APIError(400, "request body is empty; send a JSON object", "invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise APIError(400, f"request body is not valid JSON: {e}", "invalid_json") from e
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object", "invalid_json")
    return body
