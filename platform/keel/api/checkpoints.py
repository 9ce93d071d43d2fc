"""Admin API for the checkpoint registry, promotion and rollback (the CLI and the flywheel call these)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from keel.api.deps import Admin, query_limit
from keel.checkpoints.fingerprints import FingerprintUnavailable
from keel.store import registry

router = APIRouter(prefix="/admin")
log = logging.getLogger("keel.registry")


MAX_REASON = 2000  # a line of history, not a document


class AddBody(BaseModel):
    path: str = Field(min_length=1, max_length=4096)
    version: str | None = Field(
        None, max_length=128, description="Default: the manifest's, else the folder name."
    )


# No `by`: the history names the key that asked (a body could name anyone). Older clients that still
# send one are not refused; it is ignored.
class PromoteBody(BaseModel):
    version: str = Field(min_length=1, max_length=128)
    force: bool = False
    reason: str | None = Field(None, max_length=MAX_REASON)


class RollbackBody(BaseModel):
    to: str | None = Field(None, max_length=128)
    reason: str | None = Field(None, max_length=MAX_REASON)


def _db(request: Request):
    return request.app.state.platform.db


@router.get("/checkpoints")
def list_checkpoints(request: Request, _: Admin) -> list[dict]:
    return [c.to_dict() for c in registry.list_all(_db(request))]


@router.get("/checkpoints/{version}")
def show_checkpoint(request: Request, version: str, _: Admin) -> dict:
    return registry.get(_db(request), version).to_dict()


@router.post("/checkpoints")
def add_checkpoint(request: Request, body: AddBody, _: Admin) -> dict:
    cp = registry.add(_db(request), Path(body.path), body.version)
    # what these weights answer to the probes, kept for every later swap to check the engine against
    book = getattr(request.app.state.platform, "fingerprints", None)
    if book is not None:
        try:
            book.ensure(cp.version, Path(cp.path))
        except FingerprintUnavailable as e:
            log.warning("%s registered without a fingerprint (computed at its first swap): %s", cp.version, e)
    return cp.to_dict()


@router.post("/promote")
async def promote(request: Request, body: PromoteBody, who: Admin) -> dict:
    service = request.app.state.platform.promotions
    out = await service.promote(body.version, force=body.force, by=who, reason=body.reason)
    return out.to_dict()


@router.post("/rollback")
async def rollback(request: Request, body: RollbackBody, who: Admin) -> dict:
    service = request.app.state.platform.promotions
    out = await service.rollback(body.to, by=who, reason=body.reason)
    return out.to_dict()


@router.get("/swaps")
def swaps(request: Request, _: Admin, limit: Annotated[int, query_limit(10_000)] = 50) -> list[dict]:
    return request.app.state.platform.promotions.history(limit)
