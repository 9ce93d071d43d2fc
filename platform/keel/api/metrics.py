"""GET /metrics: the platform's Prometheus exposition (keel.metrics builds it)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from keel.api.deps import require_admin
from keel.metrics import CONTENT_TYPE
from serving.errors import APIError

router = APIRouter()


def check_scraper(request: Request) -> None:
    """The admin rule (401 no/unknown key, 403 a valid non-admin key) unless ``metrics.auth: none``."""
    if request.app.state.platform.settings.metrics.auth == "none":
        return
    require_admin(request)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    platform = request.app.state.platform
    if not platform.settings.metrics.enabled:
        raise APIError(404, "metrics are turned off (metrics.enabled: false)", code="not_found")
    check_scraper(request)
    # engines' own /metrics are fetched during collection: keep that off the event loop
    body = await asyncio.to_thread(platform.metrics.render)
    return Response(body, media_type=CONTENT_TYPE)
