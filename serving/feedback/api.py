"""Thin router: the service is built by the platform and kept on app.state.feedback."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

router = APIRouter()


@router.post("/v1/feedback")
async def create_feedback(request: Request) -> Response:
    return await request.app.state.feedback.handle(request)
