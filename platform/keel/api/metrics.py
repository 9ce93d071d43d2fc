"""GET /metrics: the platform's Prometheus exposition (keel.metrics builds it)."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response

from keel.metrics import CONTENT_TYPE
from serving.errors import APIError
from serving.gateway.auth import bearer_token

router = APIRouter()


def check_scraper(request: Request) -> None:
    """401 without a key or with an unknown one, 403 with a valid key that is not an admin's."""
    platform = request.app.state.platform
    if platform.settings.metrics.auth == "none":
        return
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise APIError(
            401, "missing API key: send 'Authorization: Bearer <admin key>'", code="missing_api_key"
        )
    if hmac.compare_digest(token, platform.admin_key):
        return
    principal = platform.keys.verify(token)
    if principal is None:
        raise APIError(401, "invalid or revoked API key", code="invalid_api_key")
    if principal.role != "admin":
        raise APIError(403, "metrics need an admin key", code="forbidden")


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    platform = request.app.state.platform
    if not platform.settings.metrics.enabled:
        raise APIError(404, "metrics are turned off (metrics.enabled: false)", code="not_found")
    check_scraper(request)
    # engines' own /metrics are fetched during collection: keep that off the event loop
    body = await asyncio.to_thread(platform.metrics.render)
    return Response(body, media_type=CONTENT_TYPE)
