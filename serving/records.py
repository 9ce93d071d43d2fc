"""Internal records the serving path emits. Wire formats live in serving.protocol; these are ours."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field


class RequestRecord(BaseModel):
    """One row of the request log: every request, accepted or rejected."""

    request_id: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    key_id: str | None = None
    endpoint: str = "/v1/chat/completions"
    model: str | None = None
    checkpoint_version: str | None = None
    engine_url: str | None = None
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
    route: str = "direct"
    route_confidence: float | None = None
    retrieved: list[dict[str, Any]] = Field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    retrieval_ms: float | None = None
    generation_ms: float | None = None
    status_code: int = 200
    error: str | None = None
    regenerate_of: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class RecordSink(Protocol):
    """Where the gateway hands finished records. Must never block the event loop on a database."""

    def submit(self, record: RequestRecord) -> None: ...
