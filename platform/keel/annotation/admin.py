"""Admin routes for the flywheel data: feedback, pairs, annotations, mining runs and exports."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from keel.admin import Admin

router = APIRouter(prefix="/admin/flywheel")

JSON_COLS = ("prompt", "retrieved", "provenance", "messages", "stats", "params")


def rows_as_dicts(cur) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        item = dict(zip(names, row, strict=True))
        for k, v in item.items():
            if k in JSON_COLS and isinstance(v, str):
                item[k] = json.loads(v)
            elif hasattr(v, "isoformat"):
                item[k] = v.isoformat()
        out.append(item)
    return out


@router.get("/feedback")
def list_feedback(
    request: Request, _: Admin, request_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    db = request.app.state.platform.db
    where, params = ("WHERE request_id = ?", [request_id]) if request_id else ("", [])
    cur = db.cursor().execute(
        f"SELECT * FROM feedback {where} ORDER BY created_at LIMIT ?", [*params, min(limit, 10_000)]
    )
    return rows_as_dicts(cur)


@router.get("/pairs")
def list_pairs(
    request: Request,
    _: Admin,
    status: Annotated[list[str] | None, Query()] = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    db = request.app.state.platform.db
    where, params = "", []
    if status:
        where = f"WHERE status IN ({','.join('?' * len(status))})"
        params = list(status)
    cur = db.cursor().execute(
        f"SELECT * EXCLUDE (lease_token) FROM pairs {where} ORDER BY created_at LIMIT ?",
        [*params, min(limit, 100_000)],
    )
    return rows_as_dicts(cur)


@router.get("/annotations")
def list_annotations(request: Request, _: Admin, limit: int = 1000) -> list[dict[str, Any]]:
    db = request.app.state.platform.db
    cur = db.cursor().execute(
        "SELECT * EXCLUDE (lease_token) FROM annotations ORDER BY created_at LIMIT ?", [min(limit, 100_000)]
    )
    return rows_as_dicts(cur)


class MineBody(BaseModel):
    full: bool = False


class ExportBody(BaseModel):
    out: str
    include_unreviewed: bool = False


@router.post("/mine")
def mine(request: Request, body: MineBody, _: Admin) -> dict[str, Any]:
    from keel.annotation.ops import run_mining

    p = request.app.state.platform
    p.writer.flush()
    return run_mining(p.db, p.settings, full=body.full)


@router.post("/export")
def export(request: Request, body: ExportBody, _: Admin) -> dict[str, Any]:
    from keel.annotation.ops import run_export

    p = request.app.state.platform
    return run_export(p.db, p.settings, body.out, include_unreviewed=body.include_unreviewed)
