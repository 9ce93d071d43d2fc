"""Typed config section for the intent router. Filled by keel.config; never reads files itself."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


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
