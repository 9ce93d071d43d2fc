"""Admin API for the document index: `keel index` goes through here while the platform runs.

The platform process is the only writer of the index (Chroma is not process-safe), so a CLI index
request becomes a job for its background indexer: the lexical phase is awaited (errors come back as
one-line 400s and leave the index untouched), the dense phase continues in the background.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from keel.api.deps import Admin
from serving.errors import APIError

router = APIRouter(prefix="/admin")


class IndexRequest(BaseModel):
    paths: list[str] = Field(default_factory=list, description="Absolute files/folders to index.")
    remove: list[str] = Field(default_factory=list, description="Files/folders to drop from the index.")
    dense: bool = Field(True, description="Embed in the background after the lexical phase.")


def _indexer(request: Request):
    indexer = request.app.state.platform.indexer
    if indexer is None:
        raise APIError(503, "the platform's indexer is not running", code="indexer_unavailable")
    return indexer


@router.get("/index")
def index_status(request: Request, _: Admin) -> dict:
    return _indexer(request).status()


@router.post("/index")
async def index(request: Request, body: IndexRequest, _: Admin) -> dict:
    if not body.paths and not body.remove:
        raise APIError(400, "give paths to index (or remove)", param="paths")
    for p in body.paths + body.remove:
        if not Path(p).is_absolute():  # relative to what? the CLI resolves them against its own cwd
            raise APIError(400, f"{p}: paths must be absolute", param="paths")
    indexer = _indexer(request)
    future = indexer.submit([Path(p) for p in body.paths], [Path(p) for p in body.remove], body.dense)
    summary = await asyncio.wrap_future(future)  # InputError, IndexStoreError: ServingErrors, 400
    return {"summary": summary.line(), "result": summary.__dict__, "status": indexer.status()}
