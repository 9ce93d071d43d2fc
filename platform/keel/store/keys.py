"""API keys: shown once at creation, stored only as a sha256 hash."""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime

from keel.errors import KeelError
from keel.store.db import Database
from serving.gateway.auth import Principal

ROLES = ("user", "annotator", "admin")


class KeyError_(KeelError, ValueError):
    """A key operation that cannot be done; one line for the user."""


class UnknownKey(KeyError_):
    status = 404
    code = "not_found"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass
class KeyInfo:
    key_id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None

    def to_dict(self) -> dict:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


class KeyStore:
    """DuckDB-backed keys with an in-memory index so the request path never queries the database."""

    def __init__(self, db: Database):
        self.db = db
        self._lock = threading.Lock()
        self._by_hash: dict[str, Principal] = {}
        self._by_id: dict[str, Principal] = {}
        self.reload()

    def reload(self) -> None:
        rows = self.db.fetchall("SELECT key_id, name, role, key_hash FROM api_keys WHERE revoked_at IS NULL")
        with self._lock:
            self._by_hash = {h: Principal(key_id=k, name=n, role=r) for k, n, r, h in rows}
            self._by_id = {p.key_id: p for p in self._by_hash.values()}

    def verify(self, secret: str) -> Principal | None:
        return self._by_hash.get(hash_key(secret))

    def active(self, key_id: str) -> Principal | None:
        """The key as it is now (role included), or None once revoked: sessions check this per request."""
        return self._by_id.get(key_id)

    def create(self, name: str, role: str = "user") -> tuple[KeyInfo, str]:
        if not name.strip():
            raise KeyError_("a key needs a non-empty --name")
        if role not in ROLES:
            raise KeyError_(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        secret = "sk-keel-" + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(6)
        self.db.execute(
            "INSERT INTO api_keys (key_id, name, key_hash, role) VALUES (?, ?, ?, ?)",
            [key_id, name, hash_key(secret), role],
        )
        self.reload()
        return self.get(key_id), secret

    def get(self, key_id: str) -> KeyInfo:
        rows = self.db.fetchall(
            "SELECT key_id, name, role, created_at, revoked_at FROM api_keys WHERE key_id = ? OR name = ?",
            [key_id, key_id],
        )
        if not rows:
            raise UnknownKey(f"no key with id or name {key_id!r}")
        if len(rows) > 1:
            raise KeyError_(f"several keys are named {key_id!r}; revoke by key id")
        return KeyInfo(*rows[0])

    def list(self) -> list[KeyInfo]:
        rows = self.db.fetchall(
            "SELECT key_id, name, role, created_at, revoked_at FROM api_keys ORDER BY created_at"
        )
        return [KeyInfo(*r) for r in rows]

    def revoke(self, key_id: str) -> KeyInfo:
        info = self.get(key_id)
        if info.revoked_at is not None:
            raise KeyError_(f"key {info.key_id} is already revoked")
        self.db.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = ?", [info.key_id])
        self.reload()
        return self.get(info.key_id)
