"""The platform's one error path: every error a route lets through becomes OpenAI's ``{"error": {...}}``.

Routes raise and never translate. ``APIError`` carries its own status; a user-facing error of any
package (``keel.errors.user_errors()``: KeelError, ServingError, TrainingError, FlywheelError) carries
``status``/``code``/``param`` as class attributes (see keel/errors.py) and is mapped here by type; a
request that fails validation is a 400 naming the field. Anything else is a bug: a 500 with its traceback
in the log.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from keel.errors import http_status, user_errors
from serving.errors import APIError
from serving.gateway.api import request_id_headers


def as_api_error(exc: Exception) -> APIError:
    """The OpenAI-shaped error a user-facing exception declares."""
    if isinstance(exc, APIError):
        return exc
    message = str(exc) or type(exc).__name__
    return APIError(http_status(exc), message, getattr(exc, "code", None), getattr(exc, "param", None))


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    return as_api_error(exc).response(request_id_headers(request))


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    err = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    return APIError(
        400, f"invalid '{param}': {err.get('msg', 'bad request')}", "invalid_request", param
    ).response(request_id_headers(request))


def install_error_handlers(app: FastAPI) -> None:
    """One handler per base, by type (Starlette picks the nearest class in the error's MRO, so
    ``APIError``, a ``ServingError``, keeps its own status)."""
    app.add_exception_handler(APIError, _api_error)
    for base in user_errors():
        app.add_exception_handler(base, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
