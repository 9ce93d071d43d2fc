"""Dependencies of the platform's routers: who is calling, and the platform parts a route needs."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Query, Request

from keel.store.db import Database
from serving.errors import APIError
from serving.gateway.auth import bearer_token


def require_admin(request: Request) -> str:
    """The caller's name when it holds the platform's admin key or an admin-role key; else 401."""
    token = bearer_token(request.headers.get("authorization"))
    platform = request.app.state.platform
    if token and hmac.compare_digest(token, platform.admin_key):
        return "admin"
    principal = platform.keys.verify(token) if token else None
    if principal is not None and principal.role == "admin":
        return principal.name
    raise APIError(401, "admin key required", code="invalid_api_key")


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
