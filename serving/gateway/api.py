"""Thin FastAPI router: every handler delegates to services kept on app.state."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from serving.errors import APIError
from serving.gateway.auth import authenticate
from serving.protocol import ModelCard, ModelList

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await request.app.state.chat.handle(request)


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    state = request.app.state
    try:
        authenticate(state.chat.verifier, request.headers.get("authorization"))
    except APIError as e:
        return e.response()
    pool = state.pool
    card = ModelCard(
        id=state.chat.config.served_model_name,
        root=pool.endpoints[0].model_dir if pool.endpoints else None,
        checkpoint_version=pool.version,
    )
    return JSONResponse(ModelList(data=[card]).model_dump())


@router.get("/health")
async def health(request: Request) -> Response:
    pool = request.app.state.pool
    body = {
        "status": "ok" if pool.ready() else "starting",
        "checkpoint_version": pool.version,
        "engines": [{"url": e.url, "version": e.version, "healthy": e.healthy} for e in pool.endpoints],
    }
    error = getattr(request.app.state, "engine_error", None)
    if error:
        body["status"], body["error"] = "error", error
    return JSONResponse(body, status_code=200 if pool.ready() else 503)
