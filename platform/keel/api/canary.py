"""Admin API for the canary: start one by hand, see it, stop it (a cycle starts its own the same way)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from keel.api.deps import Admin
from keel.checkpoints.canary import WINDOW_FIELDS, CanaryError

router = APIRouter(prefix="/admin/canary")


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=128)
    share: float | None = Field(
        None, gt=0, lt=1, description="Share of conversations (default: canary.share)."
    )
    force: bool = Field(False, description="Canary a version that failed its gates anyway (recorded).")
    min_requests: int | None = Field(None, ge=1, description="Per canary: canary.min_requests.")
    max_requests: int | None = Field(None, ge=1, description="Per canary: canary.max_requests.")
    max_window_s: float | None = Field(None, gt=0, description="Per canary: canary.max_window_s.")
    check_every_s: float | None = Field(None, gt=0, description="Per canary: canary.check_every_s.")


def _svc(request: Request):
    svc = request.app.state.platform.canary
    if svc is None:
        raise CanaryError("no canary here: the platform is not running (keel up)")
    return svc


@router.post("")
async def start(request: Request, body: StartBody, who: Admin) -> dict[str, Any]:
    window = body.model_dump(include=set(WINDOW_FIELDS), exclude_none=True)
    return await _svc(request).start(body.version, body.share, force=body.force, by=who, window=window)


@router.get("")
def status(request: Request, _: Admin) -> dict[str, Any]:
    return _svc(request).status()


@router.post("/stop")
async def stop(request: Request, who: Admin) -> dict[str, Any]:
    return await _svc(request).stop(by=who)
