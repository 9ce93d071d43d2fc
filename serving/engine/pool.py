"""The endpoints the gateway sends requests to, balanced by least outstanding requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from serving.errors import APIError


@dataclass(eq=False)
class Endpoint:
    """One engine URL serving one checkpoint version (a managed process or an external replica)."""

    url: str
    version: str
    model_dir: str | None = None
    healthy: bool = True
    outstanding: int = 0
    managed: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    # the probe answers this endpoint was last verified against (serving.engine.fingerprint.Fingerprint)
    fingerprint: Any = None

    def __post_init__(self) -> None:
        self.idle.set()


class EnginePool:
    """Current endpoints plus a gate that holds new requests while a swap is in progress."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []
        self._open = asyncio.Event()
        self._open.set()
        self._held_since: float | None = None
        self.held_total_s = 0.0  # how long the gate has been closed, all holds together (measured)

    @property
    def version(self) -> str | None:
        versions = {e.version for e in self.endpoints if e.healthy}
        return (
            next(iter(versions))
            if len(versions) == 1
            else (self.endpoints[0].version if self.endpoints else None)
        )

    def ready(self) -> bool:
        return any(e.healthy for e in self.endpoints)

    def pick(self) -> Endpoint:
        healthy = [e for e in self.endpoints if e.healthy]
        if not healthy:
            raise APIError(503, "no engine is ready yet; retry shortly", code="engine_unavailable")
        return min(healthy, key=lambda e: e.outstanding)

    def hold(self) -> None:
        """New requests wait (they are not refused) until release()."""
        if self._held_since is None:
            self._held_since = time.perf_counter()
        self._open.clear()

    def release(self) -> None:
        if self._held_since is not None:
            self.held_total_s += time.perf_counter() - self._held_since
            self._held_since = None
        self._open.set()

    def held_so_far(self) -> float:
        """held_total_s, counting a hold still in progress."""
        running = time.perf_counter() - self._held_since if self._held_since is not None else 0.0
        return self.held_total_s + running

    @asynccontextmanager
    async def lease(self, wait_s: float = 120.0, endpoint: Endpoint | None = None) -> AsyncIterator[Endpoint]:
        """Pick an endpoint (or take ``endpoint``) and count the request against it until the block exits."""
        if not self._open.is_set():
            try:
                await asyncio.wait_for(self._open.wait(), wait_s)
            except TimeoutError as e:
                raise APIError(
                    503, "engine swap in progress; retry shortly", code="engine_unavailable"
                ) from e
        ep = endpoint if endpoint is not None else self.pick()
        ep.outstanding += 1
        ep.idle.clear()
        try:
            yield ep
        finally:
            ep.outstanding -= 1
            if ep.outstanding == 0:
                ep.idle.set()

    async def drain(self, endpoint: Endpoint, timeout: float) -> bool:
        """Wait until an endpoint has no request in flight; False on timeout."""
        try:
            await asyncio.wait_for(endpoint.idle.wait(), timeout)
            return True
        except TimeoutError:
            return False
