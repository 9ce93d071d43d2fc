"""API key checking as the gateway sees it; the platform supplies the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from serving.errors import APIError


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    role: str = "user"


class KeyVerifier(Protocol):
    def verify(self, secret: str) -> Principal | None: ...


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(verifier: KeyVerifier, authorization: str | None) -> Principal:
    token = bearer_token(authorization)
    if token is None:
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    principal = verifier.verify(token)
    if principal is None:
        raise APIError(401, "invalid or revoked API key", code="invalid_api_key")
    return principal
