"""Admin API for eval records: the CLI posts eval runs and gate decisions here while the platform runs."""

from __future__ import annotations

from fastapi import APIRouter, Request

from keel.api.deps import Admin
from keel.store import evals

router = APIRouter(prefix="/admin")


@router.post("/evals")
def record_eval(request: Request, body: evals.EvalRecord, _: Admin) -> dict:
    return evals.record(request.app.state.platform.db, body)


@router.get("/evals")
def list_evals(request: Request, _: Admin, version: str | None = None) -> list[dict]:
    return evals.list_for(request.app.state.platform.db, version)
