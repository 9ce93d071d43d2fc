"""Admin routes for flywheel cycles: start (the same path as the CLI and the scheduler), list, show,
status (with the next scheduled run), cancel, resume, and the cycle's HTML report.

A refused cycle raises a ``CycleError`` whose class says its status (``UnknownCycle`` 404, ``CycleBusy``
409, else 400); keel.api.errors answers it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from keel.api.deps import Admin, query_limit
from serving.errors import APIError

router = APIRouter(prefix="/admin/cycles")


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stages: list[Literal["cpt", "sft", "dpo", "kto"]] | None = Field(
        None, description="Default: cycle.stages."
    )
    dry_run: bool = Field(False, description="Mine and build the snapshots; train nothing.")
    profile: str | None = Field(None, description="A shipped profile name (e.g. demo) or a YAML path.")
    wait: bool = Field(False, description="Answer when the cycle has ended (default: at once, 202).")
    trigger: Literal["api", "cli"] = Field("api", description="Recorded with the cycle.")


class ResumeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait: bool = False


def _svc(request: Request):
    return request.app.state.platform.cycles


@router.post("", status_code=202)
def start(request: Request, body: StartBody, _: Admin) -> dict[str, Any]:
    return _svc(request).start(body.trigger, body.stages, body.dry_run, body.profile, body.wait).to_dict()


@router.get("")
def list_cycles(
    request: Request, _: Admin, limit: Annotated[int, query_limit(1000)] = 50
) -> list[dict[str, Any]]:
    return _svc(request).list(limit)


@router.get("/status")
def status(request: Request, _: Admin) -> dict[str, Any]:
    return _svc(request).status()


@router.get("/{cycle_id}")
def show(request: Request, cycle_id: str, _: Admin) -> dict[str, Any]:
    return _svc(request).show(cycle_id)


@router.post("/{cycle_id}/cancel")
def cancel(request: Request, cycle_id: str, _: Admin) -> dict[str, Any]:
    return _svc(request).cancel(cycle_id).to_dict()


@router.post("/{cycle_id}/resume", status_code=202)
def resume(request: Request, cycle_id: str, body: ResumeBody, _: Admin) -> dict[str, Any]:
    return _svc(request).resume(cycle_id, body.wait).to_dict()


@router.get("/{cycle_id}/report", response_class=HTMLResponse)
def report(request: Request, cycle_id: str, _: Admin) -> HTMLResponse:
    c = _svc(request).show(cycle_id)
    if not c.get("report") or not Path(c["report"]).exists():
        raise APIError(404, f"cycle {cycle_id} has no report yet", code="not_found")
    return HTMLResponse(Path(c["report"]).read_text(encoding="utf-8"))
