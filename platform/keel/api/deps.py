"""Dependencies of the platform's routers: who is calling, and the platform parts a route needs."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from keel.store.db import Database
from serving.errors import APIError
from serving.gateway.auth import bearer_token


@dataclass(frozen=True)
class AdminCaller:
    """Who holds an admin key: ``key_id`` None for the platform's own ``run/admin.key``."""

    key_id: str | None
    name: str


def admin_caller(platform, token: str | None) -> AdminCaller:
    """The one admin rule, for every admin surface (the admin API, /metrics, the console and its API):
    401 for a missing, unknown or revoked key; 403 for a valid key that is not an admin's."""
    if not token:
        raise APIError(
            401, "missing API key: send 'Authorization: Bearer <admin key>'", code="missing_api_key"
        )
    if hmac.compare_digest(token.encode(), platform.admin_key.encode()):
        return AdminCaller(None, "admin")
    principal = platform.keys.verify(token)
    if principal is None:
        raise APIError(401, "invalid or revoked API key", code="invalid_api_key")
    if principal.role != "admin":
        raise APIError(
            403, f"this needs an admin key; {principal.name!r} is a {principal.role} key", code="forbidden"
        )
    return AdminCaller(principal.key_id, principal.name)


def require_admin(request: Request) -> str:
    """The caller's name when the bearer key is an admin's (see ``admin_caller`` for the rule)."""
    token = bearer_token(request.headers.get("authorization"))
    return admin_caller(request.app.state.platform, token).name


def get_db(request: Request) -> Database:
    return request.app.state.platform.db


Admin = Annotated[str, Depends(require_admin)]
Db = Annotated[Database, Depends(get_db)]


def query_limit(maximum: int) -> object:
    """A ``limit`` query parameter: 1..maximum, else 400 (a negative LIMIT reached DuckDB as a 500)."""
    return Query(ge=1, le=maximum, description=f"How many rows, 1..{maximum}.")


def query_offset(maximum: int = 10_000_000) -> object:
    """An ``offset`` query parameter: 0..maximum, else 400."""
    return Query(ge=0, le=maximum, description=f"Rows to skip, 0..{maximum}.")
