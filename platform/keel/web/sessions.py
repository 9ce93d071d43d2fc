"""Browser sessions backed by API keys, for the annotation page and the console.

Session id → (key id, label, expiry), in memory: a platform restart logs everyone out. Every lookup checks
the key store, so revoking a key (or taking away the role the page needs) ends its sessions at once; they
also expire after their time to live.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass

from keel.store.keys import KeyStore
from serving.gateway.auth import Principal


@dataclass(frozen=True)
class Session:
    key_id: str | None  # None: the platform's own admin key, which is never revoked
    label: str  # what the page shows (the operator's name on the console)
    principal: Principal | None  # the key as the key store has it now (None for the platform's key)


class KeySessions:
    def __init__(self, keys: KeyStore, ttl_s: float, roles: Collection[str]):
        self.keys, self.ttl_s, self.roles = keys, ttl_s, frozenset(roles)
        self._sessions: dict[str, tuple[str | None, str, float]] = {}

    def start(self, key_id: str | None, label: str = "") -> str:
        sid = secrets.token_urlsafe(24)
        self._sessions[sid] = (key_id, label, time.monotonic() + self.ttl_s)
        return sid

    def get(self, sid: str | None) -> Session | None:
        """The live session, or None (and the session ends) when it expired or its key was revoked or lost
        its role."""
        entry = self._sessions.get(sid) if sid else None
        if entry is None:
            return None
        key_id, label, expires = entry
        principal, alive = None, time.monotonic() < expires
        if alive and key_id is not None:
            principal = self.keys.active(key_id)
            alive = principal is not None and principal.role in self.roles
        if not alive:
            self.end(sid)
            return None
        return Session(key_id, label, principal)

    def end(self, sid: str | None) -> None:
        self._sessions.pop(sid or "", None)
