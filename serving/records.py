"""Internal records the serving path emits. Wire formats live in serving.protocol; these are ours."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from serving.errors import ServingError


class RouteInfo(BaseModel):
    """What routing decided for one request: made once by the router hook, carried unchanged to the log
    row (its ``route_info`` column; route, confidence, retrieved chunks and retrieval time are also flat
    columns, derived from it, because SQL filters and groups on them)."""

    route: str = "direct"
    confidence: float | None = None
    scores: dict[str, float] = Field(default_factory=dict)  # every intent's score
    retrieved: list[dict[str, Any]] = Field(default_factory=list)  # every retrieved chunk: id, score
    sources: list[dict[str, Any]] = Field(default_factory=list)  # what the answer cites: path, title, ...
    classify_ms: float | None = None
    retrieval_ms: float | None = None
    routing_ms: float | None = None  # set when routing was abandoned at its deadline
    fallback: bool = False  # served without documents or without routing
    fallback_reason: str | None = None  # why routing itself was skipped (deadline, busy, error)
    retrieval_error: str | None = None
    router_error: str | None = None
    applied_params: dict[str, Any] = Field(default_factory=dict)  # route sampling defaults the request lacked
    # domain route while the dense index is incomplete (still embedding, or dense off): BM25 only
    lexical_only: bool = False


# keys older records kept in `meta` that RouteInfo now types (journals written before it are replayed)
_LEGACY_ROUTE_META = {
    "classify_ms": "classify_ms",
    "route_scores": "scores",
    "fallback": "fallback",
    "fallback_reason": "fallback_reason",
    "retrieval_error": "retrieval_error",
    "router_error": "router_error",
    "routing_ms": "routing_ms",
    "route_params": "applied_params",
}


# the request row's flat columns (SQL filters and groups on them), each derived from a RouteInfo field
FLAT_ROUTE_COLUMNS = {
    "route": "route",
    "route_confidence": "confidence",
    "retrieved": "retrieved",
    "retrieval_ms": "retrieval_ms",
    "lexical_only": "lexical_only",
}


class RequestMeta(BaseModel):
    """What the gateway notes about serving a request, beside its route."""

    # keys this model does not name (a record from an older journal) are kept, never dropped
    model_config = ConfigDict(extra="allow")

    dispatched_at: float | None = None  # unix time the request went to an engine
    engine_retries: int | None = None  # set when a dead engine's request was retried on another
    method: str | None = None  # the HTTP method of a request to an unknown route


class RequestRecord(BaseModel):
    """One row of the request log: every request, accepted or rejected."""

    request_id: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    key_id: str | None = None
    endpoint: str = "/v1/chat/completions"
    model: str | None = None
    checkpoint_version: str | None = None
    engine_url: str | None = None
    arm: str | None = None  # champion | candidate while a canary splits traffic (None: no engine call)
    stream: bool = False
    messages: list[dict[str, Any]] | None = None  # what the client sent
    # What the engine received: the messages after routing (system prompt, domain template with the
    # retrieved chunks, history) and the prompt text the engine rendered from them. None: no engine call.
    engine_messages: list[dict[str, Any]] | None = None
    engine_prompt: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    response_text: str | None = None  # what the client saw (choice 0), gateway additions included
    completion_text: str | None = None  # the model's own text of choice 0, nothing appended
    appended_text: str | None = None  # what the gateway appended to every choice (the "Sources:" list)
    choices: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    route_info: RouteInfo = Field(default_factory=RouteInfo)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    generation_ms: float | None = None
    status_code: int = 200
    error: str | None = None
    regenerate_of: str | None = None
    meta: RequestMeta = Field(default_factory=RequestMeta)

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        """A record without ``route_info`` (a journal written before it, a row read back) gets it from the
        flat columns and the routing keys it kept in ``meta``."""
        if not isinstance(data, dict) or data.get("route_info") is not None:
            return data
        data = dict(data)
        meta = dict(data.get("meta") or {})
        info = {new: meta.pop(old) for old, new in _LEGACY_ROUTE_META.items() if old in meta}
        meta.pop("sources_text", None)
        for col, field in FLAT_ROUTE_COLUMNS.items():
            if data.get(col) is not None:
                info[field] = data[col]
        data["route_info"], data["meta"] = info, meta
        return data

    @model_serializer(mode="wrap")
    def _with_flat_columns(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The row as stored: the fields, plus the flat columns derived from ``route_info``."""
        row = handler(self)
        info = row["route_info"]
        row.update({col: info[field] for col, field in FLAT_ROUTE_COLUMNS.items()})
        return row

    @property
    def route(self) -> str:
        return self.route_info.route


class RecordError(ServingError):
    """A sink could not journal a record (a full disk): the row is not recorded, so the request is not
    answered as if it were (503 over HTTP). One line."""

    status = 503
    code = "request_log_unavailable"


class RecordSink(Protocol):
    """Where the gateway hands finished records. Must never block the event loop on a database.
    ``submit`` raises RecordError when it could not keep the record."""

    def submit(self, record: RequestRecord) -> None: ...
