"""OpenAI wire formats the gateway validates and produces (the subset Keel checks; the rest passes through)."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _content_parts(cls, v: Any) -> Any:
        if isinstance(v, list) and not all(isinstance(p, dict) and "type" in p for p in v):
            raise ValueError("content parts must be objects with a 'type'")
        return v


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


# The engine's own limits (vLLM 0.32: vllm/envs.py, vllm/sampling_params.py `_verify_args`,
# chat_completion/protocol.py), checked here so a client gets one clear 400 before any engine is asked,
# not vLLM's pydantic dump. VLLM_MAX_STOP_STRINGS defaults to 4; max_logprobs (ModelConfig) to 20.
MAX_STOP = 4
MAX_N = 16  # vLLM allows 16,384 (VLLM_MAX_N_SEQUENCES); n completions cost n generations: ours is lower
MAX_LOGPROBS = 20
_INT64 = 2**63
_GREEDY_EPS = 1e-5  # vLLM's _SAMPLING_EPS: a temperature under it is greedy sampling


class ChatCompletionRequest(BaseModel):
    """Validated before the engine is asked. Unknown fields are vLLM extensions and pass through."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    min_tokens: int | None = Field(None, ge=0)
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=-1, le=MAX_LOGPROBS)
    prompt_logprobs: int | None = Field(None, ge=-1, le=MAX_LOGPROBS)
    seed: int | None = Field(None, ge=-_INT64, lt=_INT64)
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: Any) -> Any:
        if isinstance(v, list):
            if len(v) > MAX_STOP:
                raise ValueError(f"at most {MAX_STOP} stop sequences (got {len(v)})")
            if not all(v):
                raise ValueError("stop sequences cannot be empty strings")
        elif v == "":
            raise ValueError("stop cannot be an empty string")
        return v

    @model_validator(mode="after")
    def _engine_rules(self) -> ChatCompletionRequest:
        if self.n > 1 and self.temperature is not None and self.temperature < _GREEDY_EPS:
            raise ValueError(
                f"n must be 1 with temperature 0 (greedy sampling gives one answer), got {self.n}"
            )
        limit = self.max_completion_tokens or self.max_tokens
        if self.min_tokens and limit is not None and self.min_tokens > limit:
            raise ValueError(f"min_tokens ({self.min_tokens}) must not exceed max_tokens ({limit})")
        if self.top_logprobs not in (None, 0) and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        if self.stream and self.prompt_logprobs not in (None, 0):
            raise ValueError("prompt_logprobs are not available with stream: true")
        return self


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "keel"
    root: str | None = None
    checkpoint_version: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
