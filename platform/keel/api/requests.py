"""Admin API for the request log and the platform's status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from keel.api.deps import Admin, Db, query_limit
from keel.store import requestlog

router = APIRouter(prefix="/admin")


@router.get("/status")
def status(request: Request, _: Admin) -> dict:
    p = request.app.state.platform
    return {
        "version": p.pool.version,
        "requestlog": p.writer.stats(),
        "engine_error": p.supervisor.last_error,
    }


@router.get("/requests")
def list_requests(
    db: Db,
    _: Admin,
    id: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, query_limit(1000)] = 50,
) -> list[dict]:
    """Request log rows, newest first (optionally only the given request ids)."""
    return requestlog.list_requests(db, id, limit)


@router.get("/requests/count")
def count_requests(db: Db, _: Admin) -> dict:
    return {"count": requestlog.count_requests(db)}
