"""The endpoints the gateway sends requests to, balanced by least outstanding requests.

While a canary runs, the pool has two arms: the champion's endpoints and the candidate's. A request goes
to the candidate arm when its sticky key (API key + conversation, see ``sticky_key``) hashes below the
canary's share, so one user's conversation never flips between versions; everything else, and every
request while no candidate endpoint is healthy, goes to the champion.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import zlib
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
    arm: str = "champion"  # "candidate": serves a canary's share of conversations

    def __post_init__(self) -> None:
        self.idle.set()


CHAMPION, CANDIDATE = "champion", "candidate"


def sticky_key(key_id: str | None, messages: list[dict[str, Any]] | None, user: str | None = None) -> str:
    """What keeps a conversation on one arm: the API key, the end user the client names (OpenAI's ``user``
    field, when it sends one) and the conversation's opening (its system and first user message, the same
    in every later turn of it). With ``user``, one key that serves many people splits them person by
    person: two people who open with the same question can land on different arms."""
    opening = []
    for m in messages or []:
        opening.append(f"{m.get('role')}:{m.get('content')}")
        if m.get("role") == "user":
            break
    digest = hashlib.sha256("\x00".join(opening).encode("utf-8", "replace")).hexdigest()[:16]
    who = key_id or "-"
    if user:
        who += "/" + hashlib.sha256(user.encode("utf-8", "replace")).hexdigest()[:12]
    return f"{who}:{digest}"


def split_arm(sticky: str | None, share: float) -> str:
    """The arm a sticky key falls in at this candidate share (a request without a key stays on the champion)."""
    if sticky is None or share <= 0:
        return CHAMPION
    return CANDIDATE if zlib.crc32(sticky.encode()) / 2**32 < share else CHAMPION


class EnginePool:
    """Current endpoints plus a gate that holds new requests while a swap is in progress."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []
        self._open = asyncio.Event()
        self._open.set()
        self._held_since: float | None = None
        self.held_total_s = 0.0  # how long the gate has been closed, all holds together (measured)
        self.canary_share = 0.0  # > 0 while a canary's candidate endpoints are in the pool

    @property
    def version(self) -> str | None:
        """The champion's version (a canary's candidate endpoints are not what serves)."""
        mine = [e for e in self.endpoints if e.arm == CHAMPION]
        versions = {e.version for e in mine if e.healthy}
        return next(iter(versions)) if len(versions) == 1 else (mine[0].version if mine else None)

    def ready(self) -> bool:
        return any(e.healthy and e.arm == CHAMPION for e in self.endpoints)

    # ---- the canary's split -------------------------------------------------------------------------
    def start_canary(self, endpoints: list[Endpoint], share: float) -> None:
        """The candidate's endpoints take ``share`` of conversations from now on."""
        if not 0 < share < 1:
            raise ValueError(f"canary share must be between 0 and 1, not {share}")
        for e in endpoints:
            e.arm = CANDIDATE
        self.canary_share = share
        self.endpoints = [*self.endpoints, *endpoints]

    def stop_canary(self) -> list[Endpoint]:
        """Every request goes to the champion again; returns the candidate's endpoints (to drain and stop)."""
        out = [e for e in self.endpoints if e.arm == CANDIDATE]
        self.canary_share = 0.0
        self.endpoints = [e for e in self.endpoints if e.arm != CANDIDATE]
        return out

    def arm_for(self, sticky: str | None) -> str:
        if self.canary_share <= 0 or not any(e.healthy and e.arm == CANDIDATE for e in self.endpoints):
            return CHAMPION
        return split_arm(sticky, self.canary_share)

    def pick(self, sticky: str | None = None) -> Endpoint:
        arm = self.arm_for(sticky)
        healthy = [e for e in self.endpoints if e.healthy and e.arm == arm]
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
    async def lease(
        self, wait_s: float = 120.0, endpoint: Endpoint | None = None, sticky: str | None = None
    ) -> AsyncIterator[Endpoint]:
        """Pick an endpoint (of ``sticky``'s arm) or take ``endpoint``, and count the request against it
        until the block exits."""
        if not self._open.is_set():
            try:
                await asyncio.wait_for(self._open.wait(), wait_s)
            except TimeoutError as e:
                raise APIError(
                    503, "engine swap in progress; retry shortly", code="engine_unavailable"
                ) from e
        ep = endpoint if endpoint is not None else self.pick(sticky)
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
