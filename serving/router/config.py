"""Typed config section for the intent router. Filled by keel.config; never reads files itself."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RefitGate(BaseModel):
    """When a refitted router model may replace the current one, judged on the shipped test half.

    Zero tolerance would refuse nearly every refit: on ~235 messages one message is 0.4 points, and a
    handful of correct new flags moves a message or two either way (measured: 4 flags, accuracy
    0.983 → 0.979, chat recall −3.6 points). What must never pass is a real regression.
    """

    max_accuracy_drop_points: float = Field(0.5, ge=0, description="Overall accuracy may drop this much.")
    max_recall_drop_points: float = Field(5.0, ge=0, description="Each intent's recall may drop this much.")
    min_recall: float = Field(0.85, ge=0, le=1, description="Every intent's recall stays at least this.")


class RouteGeneration(BaseModel):
    """Sampling defaults for one route's engine call; a request that sets a field keeps its own value."""

    model_config = ConfigDict(extra="forbid")

    repetition_penalty: float | None = Field(None, gt=0, description="vLLM repetition penalty (1 = off).")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="OpenAI frequency penalty.")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="OpenAI presence penalty.")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling.")
    max_tokens: int | None = Field(None, ge=1, description="Answer length cap when the request sets none.")

    def params(self) -> dict[str, float | int]:
        return self.model_dump(exclude_none=True)


class RouterConfig(BaseModel):
    """How chat requests are classified (domain / chat / out_of_scope) and how each route answers."""

    enabled: bool = Field(
        True, description="Route chat completions; off: every request goes straight to the engine."
    )
    intents_file: Path | None = Field(
        None, description="Intents YAML with example utterances; empty: the packaged one."
    )
    classifier: Literal["linear", "embedding", "llm"] = Field(
        "linear",
        description="'linear': logistic regression on the message embedding + product-name counts "
        "(router.model_file; fast, deterministic); 'embedding': nearest intents-file examples; "
        "'llm': ask the engine (falls back to 'embedding').",
    )
    model_file: Path | None = Field(
        None,
        description="Linear router model (JSON, written by `keel router train`); empty: the packaged one.",
    )
    refit_gate: RefitGate = Field(default_factory=RefitGate)
    threshold: float = Field(
        0.80,
        description="'embedding' classifier: best example similarity under this → out_of_scope "
        "(E5 cosines sit in 0.7–1.0).",
    )
    neighbours: int = Field(
        3, description="'embedding' classifier: examples per intent averaged into its score."
    )
    domain_template: Path | None = Field(
        None, description="Jinja template of the domain system prompt; empty: packaged."
    )
    context_chunks: int = Field(4, description="Retrieved chunks put into the domain prompt.")
    max_context_chars: int = Field(
        1200,
        description="Upper bound on the retrieved text in the prompt (~1.1 tokens/char, embedded model).",
    )
    sources_in_message: bool = Field(True, description="Append a short 'Sources' list to domain answers.")
    generation: dict[Literal["domain", "chat"], RouteGeneration] = Field(
        default_factory=lambda: {"domain": RouteGeneration(repetition_penalty=1.2)},
        description="Per-route sampling defaults (the request's own values win). Domain: a repetition "
        "penalty, because the embedded model loops on the retrieved text until max_tokens without one "
        "(docs/BENCHMARKS.md, Router).",
    )

    def route_params(self, route: str) -> dict[str, float | int]:
        g = self.generation.get(route)  # type: ignore[call-overload]
        return g.params() if g else {}

    deadline_s: float = Field(
        3.0,
        gt=0,
        description="Routing (classify + retrieve) past this → the direct route, flagged meta.fallback; "
        "never an error.",
    )
    query_chars: int = Field(
        4000,
        ge=16,
        description="Route on the head and tail of the last message up to this many characters (the "
        "embedder then reads at most its 512-token window of that).",
    )
    workers: int = Field(2, ge=1, description="Router threads for short messages (query_chars lane).")
    long_workers: int = Field(1, ge=1, description="Router threads for long messages (their own lane).")
    long_chars: int = Field(1000, ge=1, description="Messages longer than this use the long lane.")
    queue: int = Field(16, ge=0, description="Messages waiting per lane; beyond it → direct, meta.fallback.")
    long_nice: int = Field(
        10, ge=0, le=19, description="Nice levels added to the long lane's threads (short messages first)."
    )
