"""Admin API for lineage and aliases: what `keel lineage` calls (mounted under /admin/flywheel)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from keel.api.deps import Admin, Db
from keel.store import aliases, lineage

router = APIRouter()


@router.get("/lineage/versions/{version}")
def version_lineage(version: str, db: Db, _: Admin) -> dict[str, Any]:
    return lineage.of_version(db, version)  # LineageError: 404


@router.get("/lineage/requests/{request_id}")
def request_lineage(request_id: str, db: Db, _: Admin) -> dict[str, Any]:
    return lineage.of_request(db, request_id)


@router.get("/aliases")
def list_aliases(db: Db, _: Admin, history: int = 50) -> dict[str, Any]:
    return {
        "aliases": aliases.list_all(db),
        "history": aliases.history(db, aliases.CHAMPION, limit=max(1, min(history, 10_000))),
    }


@router.get("/watches")
def list_watches(db: Db, _: Admin, limit: int = 50) -> list[dict[str, Any]]:
    """Watches after promotion, newest first: status, reason, every signal's verdict."""
    from keel.store.watches import list_watches as watches

    return watches(db, max(1, min(limit, 1000)))
