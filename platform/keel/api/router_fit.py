"""Admin routes for the router's learning loop: the route flags, and the gated refit they feed."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from keel.api.deps import Admin, Db, query_limit
from keel.store.router_flags import route_flags

router = APIRouter(prefix="/router")


@router.get("/flags")
def list_flags(db: Db, _: Admin, limit: Annotated[int, query_limit(100_000)] = 1000) -> list[dict[str, Any]]:
    return route_flags(db)[-limit:]


class TrainBody(BaseModel):
    force: bool = False  # write a candidate the gate refused (recorded as forced)
    dry_run: bool = False  # fit and judge, write nothing


@router.post("/train")
async def train(request: Request, body: TrainBody, _: Admin) -> dict[str, Any]:
    from keel.cycle.router_fit import run_router_fit

    p = request.app.state.platform
    p.writer.flush()  # flags may point at requests still in the log writer's queue
    # embedding ~700 messages takes tens of seconds of CPU: not on the event loop
    return await asyncio.to_thread(
        run_router_fit, p.db, p.settings, getattr(p, "router", None), body.force, body.dry_run
    )
