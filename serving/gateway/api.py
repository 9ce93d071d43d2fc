"""Thin FastAPI router: every handler delegates to services kept on app.state."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from serving.errors import APIError
from serving.gateway.auth import authenticate
from serving.gateway.chat import new_request_id
from serving.protocol import ModelCard, ModelList
from serving.records import RequestMeta, RequestRecord

router = APIRouter()


def is_api_path(request: Request) -> bool:
    path = request.url.path
    return path == "/v1" or path.startswith("/v1/")


def request_id_headers(request: Request) -> dict[str, str] | None:
    """An x-request-id for an error under /v1 that no handler gave one (OpenAI's clients expect it)."""
    return {"x-request-id": new_request_id()} if is_api_path(request) else None


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Routing errors (404 no such path, 405 wrong method) under /v1 in OpenAI's shape, with an
    x-request-id and a request-log row like every other refusal; elsewhere FastAPI's default."""
    if not is_api_path(request):
        return await http_exception_handler(request, exc)
    method, path = request.method, request.url.path
    code, message = {
        404: ("unknown_url", f"unknown endpoint: {method} {path}"),
        405: ("method_not_allowed", f"method {method} is not allowed on {path}"),
    }.get(exc.status_code, ("http_error", str(exc.detail)))
    err = APIError(exc.status_code, message, code)
    rid = new_request_id()
    chat = getattr(request.app.state, "chat", None)
    if chat is not None:
        chat.sink.submit(
            RequestRecord(
                request_id=rid,
                endpoint=path[:200],
                status_code=exc.status_code,
                error=message[:300],
                latency_ms=0.0,
                meta=RequestMeta(method=method),
            )
        )
    return err.response({"x-request-id": rid, **(exc.headers or {})})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]


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
