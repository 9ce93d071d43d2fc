"""The eval section of the settings (the platform fills it; eval never reads config files itself)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator

if TYPE_CHECKING:
    from training.eval.runner import EvalConfig


class EvalSettings(BaseModel):
    data: Path | None = Field(
        None, description="A folder laid out like shared/data (mmlu/, cmmlu/, general/, domain/<corpus>/)."
    )
    mmlu: Path | None = Field(
        None, description="MMLU data (CSV release or Parquet/JSONL); overrides data/mmlu."
    )
    cmmlu: Path | None = Field(
        None, description="CMMLU data (CSV release or Parquet/JSONL); overrides data/cmmlu."
    )
    general: Path | None = Field(None, description="Folder with en/valid.jsonl, zh/valid.jsonl.")
    domain: Path | None = Field(None, description="Domain corpus folder with faq_qa.jsonl and docs/.")
    policy: Path | None = Field(
        None, description="Gate policy YAML; empty: training/eval/policies/default.yaml."
    )
    gate_per_subject: int = Field(10, description="Gate suite: questions per subject (fixed, hash-ranked).")
    gate_general_docs: int = Field(50, description="Gate suite: general held-out texts per language.")
    seed: int = Field(0, description="Selects the gate subset.")
    threads: int | None = Field(None, description="torch threads for scoring (empty: torch's default).")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "float32",
        description="Scoring dtype of the model body. float32 matches lm-eval item for item; bfloat16 "
        "(auto: where the CPU has native bf16) is faster but moved accuracy by 0.5-1 point.",
    )
    backend: Literal["transformers", "vllm"] = Field(
        "vllm",
        description="Scoring engine for letters and perplexity: an in-process vLLM engine (~30-70 s start; "
        "letters several times faster than transformers, perplexity about the same; docs/BENCHMARKS.md), "
        "or batched transformers.",
    )

    answers: Path | None = Field(
        None,
        description="Frozen prompts of the answers suite (`keel eval prompts` writes them); empty: no answers "
        "suite in `keel eval` (the cycle freezes its own when answers_questions > 0).",
    )
    answers_questions: int = Field(
        0,
        ge=0,
        description="The cycle's answers suite: held-out FAQ questions whose prompts the platform freezes "
        "(fixed, hash-ranked; the demo profile asks 24); 0: no answers suite in the cycle.",
    )
    answers_en_questions: int = Field(
        0,
        ge=0,
        description="The cycle's answers suite: English domain questions added to the FAQ's Chinese ones "
        "(the platform's own set, written from the docs and disjoint from the simulation's bank), so that a "
        "candidate that stops answering English questions in English fails the answers_en gate; 0: none.",
    )
    answers_max_tokens: int = Field(
        128, ge=1, description="Answers suite: longest generated answer (greedy) in tokens."
    )
    vllm_reserved_cpus: int = Field(
        0,
        ge=0,
        description="vLLM backend on CPU: cores kept out of the engine's OpenMP binding. vLLM's default (1) "
        "keeps one for an API server that the in-process engine does not have; on 2 cores that halves the "
        "speed (5.6 vs 9.9 questions/s, docs/BENCHMARKS.md). Set 1 when the eval shares the host with serving.",
    )

    @field_validator("data", "mmlu", "cmmlu", "general", "domain", "policy", "answers", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v in ("", "null") else v

    def resolved(self) -> dict[str, Path | None]:
        """Per part, the path to read: an explicit path, else the part's folder under ``data``."""
        out: dict[str, Path | None] = {}
        for part, sub in (("mmlu", "mmlu"), ("cmmlu", "cmmlu"), ("general", "general"), ("domain", None)):
            explicit = getattr(self, part)
            if explicit is not None:
                out[part] = Path(explicit).expanduser()
            elif self.data is not None:
                root = Path(self.data).expanduser()
                if sub is not None:
                    out[part] = root / sub if (root / sub).exists() else None
                else:  # the first corpus under domain/ that has an FAQ file
                    hits = (
                        sorted((root / "domain").glob("*/faq_qa.jsonl")) if (root / "domain").is_dir() else []
                    )
                    out[part] = hits[0].parent if hits else None
            else:
                out[part] = None
        return out

    def eval_config(self, suite: str, shots: int = 0, limit: int | None = None, **over: object) -> EvalConfig:
        """The run's EvalConfig: these settings, the resolved data paths, and per-run choices (``over``
        replaces a setting for this run, e.g. the cycle's thread count)."""
        from training.eval.runner import EvalConfig

        keep = (
            "gate_per_subject",
            "gate_general_docs",
            "seed",
            "threads",
            "dtype",
            "backend",
            "vllm_reserved_cpus",
            "answers_max_tokens",
        )
        given = {**self.model_dump(include=set(keep)), **over}
        if "answers" not in given and self.answers is not None:
            given["answers"] = Path(self.answers).expanduser().resolve()
        paths = {k: (v.resolve() if v else None) for k, v in self.resolved().items()}
        return EvalConfig(suite=suite, shots=shots, limit=limit, **given, **paths)  # type: ignore[arg-type]
