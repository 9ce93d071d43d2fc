"""Admin routes for the flywheel data: feedback, pairs, annotations, mining runs and exports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from keel.api.deps import Admin, Db, query_limit
from keel.store import flywheel

router = APIRouter(prefix="/admin/flywheel")


@router.get("/feedback")
def list_feedback(
    db: Db, _: Admin, request_id: str | None = None, limit: Annotated[int, query_limit(10_000)] = 100
) -> list[dict[str, Any]]:
    return flywheel.list_feedback(db, request_id, limit)


@router.get("/pairs")
def list_pairs(
    db: Db,
    _: Admin,
    status: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, query_limit(100_000)] = 1000,
) -> list[dict[str, Any]]:
    return flywheel.list_pairs(db, status, limit)


@router.get("/annotations")
def list_annotations(
    db: Db, _: Admin, limit: Annotated[int, query_limit(100_000)] = 1000
) -> list[dict[str, Any]]:
    return flywheel.list_annotations(db, limit)


class MineBody(BaseModel):
    full: bool = False


class ExportBody(BaseModel):
    out: str | None = None  # None: a timestamped folder under the export dir (as the offline CLI does)
    include_unreviewed: bool = False


@router.post("/mine")
def mine(request: Request, body: MineBody, _: Admin) -> dict[str, Any]:
    from keel.cycle.mining import run_mining

    p = request.app.state.platform
    p.writer.flush()
    return run_mining(p.db, p.settings, full=body.full)


@router.post("/export")
def export(request: Request, body: ExportBody, _: Admin) -> dict[str, Any]:
    from keel.cycle.mining import run_export

    p = request.app.state.platform
    return run_export(p.db, p.settings, body.out, include_unreviewed=body.include_unreviewed)


# lineage and the champion alias read the flywheel's tables: /admin/flywheel/lineage/..., /admin/flywheel/aliases
def _mount_lineage() -> None:
    from keel.api.lineage import router as lineage_router
    from keel.api.router_fit import router as router_fit_router  # /admin/flywheel/router/...

    router.include_router(lineage_router)
    router.include_router(router_fit_router)


_mount_lineage()
