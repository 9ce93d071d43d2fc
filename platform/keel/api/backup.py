"""POST /admin/backup: a consistent backup of the platform that serves it (`keel backup` calls this)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from keel.api.deps import Admin
from keel.store.backup import BackupError, backup
from serving.errors import APIError

router = APIRouter(prefix="/admin")
_running = threading.Lock()  # one backup at a time per process


class BackupBody(BaseModel):
    dest: str = Field(max_length=4096, description="A new folder on the platform's host (absolute path).")
    checkpoints: bool = Field(True, description="Copy every registered checkpoint folder too.")


@router.post("/backup")
async def create_backup(request: Request, body: BackupBody, _: Admin) -> dict:
    p = request.app.state.platform
    dest = Path(body.dest)
    if not dest.is_absolute():
        raise BackupError("dest must be an absolute path on the platform's host")
    if not _running.acquire(blocking=False):
        raise APIError(409, "a backup is already running; try again when it has finished", code="busy")
    try:
        summary = await asyncio.to_thread(
            backup,
            p.settings,
            p.db,
            dest,
            flush=p.writer.flush,
            indexer=p.indexer,
            checkpoints=body.checkpoints,
            # the CLI's in-process admin app (no platform running) has no engine pool
            live=getattr(p, "pool", None) is not None,
        )
    finally:
        _running.release()
    return summary.to_dict()
