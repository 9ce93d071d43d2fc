"""One error shape for every failure: OpenAI's ``{"error": {...}}``."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from serving.protocol import ErrorInfo, ErrorResponse

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    499: "invalid_request_error",  # the client closed the connection (only the request log sees it)
    500: "server_error",
    502: "server_error",
    503: "service_unavailable",
    504: "server_error",
}


class ServingError(Exception):
    """The serving package's user-facing error base (serving cannot import keel's ``KeelError``).

    It declares the attributes keel's API handler reads (see keel/errors.py): ``status`` (HTTP),
    ``code`` and ``param``; a subclass that means something else over HTTP overrides them.
    """

    status: int = 400
    code: str | None = None
    param: str | None = None


class APIError(ServingError):
    """Raised anywhere in the request path; rendered as OpenAI error JSON (its own handler, which
    keeps the gateway's x-request-id)."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def body(self) -> dict:
        info = ErrorInfo(
            message=self.message,
            type=_TYPES.get(self.status, "server_error"),
            param=self.param,
            code=self.code,
        )
        return ErrorResponse(error=info).model_dump()

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def from_engine(status: int, payload: object) -> APIError:
    """Turn an engine's error reply into ours, keeping its status and message."""
    message = "engine error"
    code = None
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = err.get("code") if isinstance(err.get("code"), str) else None
        elif isinstance(err, str):
            message = err
    elif isinstance(payload, str) and payload:
        message = payload[:500]
    return APIError(status if 400 <= status < 600 else 502, message, code=code)
