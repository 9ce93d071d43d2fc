"""Admin API for eval records: the CLI posts eval runs and gate decisions here while the platform runs."""

from __future__ import annotations

from fastapi import APIRouter, Request

from keel.api.deps import Admin
from keel.store import evals, registry
from serving.errors import APIError

router = APIRouter(prefix="/admin")


@router.post("/evals")
def record_eval(request: Request, body: evals.EvalRecord, _: Admin) -> dict:
    try:
        return evals.record(request.app.state.platform.db, body)
    except registry.RegistryError as e:
        raise APIError(400, str(e)) from e


@router.get("/evals")
def list_evals(request: Request, _: Admin, version: str | None = None) -> list[dict]:
    return evals.list_for(request.app.state.platform.db, version)
