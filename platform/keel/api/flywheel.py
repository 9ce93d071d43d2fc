"""Admin routes for the flywheel data: feedback, pairs, annotations, mining runs and exports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from keel.api.deps import Admin, Db, query_limit
from keel.store import flywheel
from serving.errors import APIError

if TYPE_CHECKING:
    from keel.config import KeelSettings


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
    # None: a timestamped folder under the export dir (as the offline CLI does)
    out: str | None = Field(None, min_length=1, max_length=1024)
    include_unreviewed: bool = False


def contained_out(settings: KeelSettings, out: str | None) -> str | None:
    """``out`` as an absolute folder inside the export dir or the data dir (relative: under the export
    dir); anything that would land elsewhere on the host (``../../..``, ``/etc``) is a 400."""
    if out is None:
        return None
    base = Path(settings.annotation.export_dir or settings.data_dir / "datasets").expanduser()
    if "\x00" in out:
        raise APIError(400, "out contains a NUL byte", "invalid_request", "out")
    try:
        dest = (base / Path(out).expanduser()).resolve()  # an absolute `out` replaces base
        roots = [base.resolve(), Path(settings.data_dir).expanduser().resolve()]
    except (OSError, RuntimeError) as e:
        raise APIError(
            400, f"out {out[:200]!r}: {getattr(e, 'strerror', None) or e}", "invalid_request", "out"
        ) from None
    if any(len(part.encode()) > 255 for part in dest.parts):  # the OS would refuse it mid-export
        raise APIError(400, "out has a path component longer than 255 bytes", "invalid_request", "out")
    if not any(dest.is_relative_to(root) and dest != root for root in roots):
        raise APIError(
            400,
            f"out {out[:200]!r} resolves to {dest}: an export goes under {roots[0]} or the data dir {roots[1]}",
            "invalid_request",
            "out",
        )
    return str(dest)


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
    out = contained_out(p.settings, body.out)
    return run_export(p.db, p.settings, out, include_unreviewed=body.include_unreviewed)


# lineage and the champion alias read the flywheel's tables: /admin/flywheel/lineage/..., /admin/flywheel/aliases
def _mount_lineage() -> None:
    from keel.api.lineage import router as lineage_router
    from keel.api.router_fit import router as router_fit_router  # /admin/flywheel/router/...

    router.include_router(lineage_router)
    router.include_router(router_fit_router)


_mount_lineage()
