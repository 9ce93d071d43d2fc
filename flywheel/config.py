"""Typed config for mining and export. The platform's config module fills it; flywheel never reads files."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator


def check_known(
    values: Iterable[str], known: Iterable[str], what: str, error: type[Exception] = ValueError
) -> list[str]:
    """``values`` as a list when each is one of ``known``; otherwise ``error`` (a validator's ValueError, or
    the caller's own error type) naming the first unknown one and the known ones."""
    values, known = list(values), list(known)
    unknown = [v for v in values if v not in known]
    if unknown:
        raise error(f"unknown {what} {unknown[0]!r} (one of {', '.join(known)})")
    return values


DEFAULT_REFUSALS = [
    r"(?i)\bI(?:'m| am)? (?:sorry,? )?(?:but )?(?:I )?(?:can(?:no|')t|cannot|am unable to|won't) (?:help|assist|provide|answer)",
    r"(?i)\bas an AI (?:language )?model\b",
    r"(?:抱歉|对不起)[，, ]*(?:我)?(?:无法|不能)",
]


# the mining rules a pair can come from (PairItem.source); `candidate`: the sampler's second answers
PAIR_SOURCES = ("edit", "regenerate", "choice", "thumbs", "candidate")


class TrustPolicy(BaseModel):
    """Which mined pairs go into the DPO snapshot without review. A review always wins: a pair the policy
    trusted and a reviewer later rejects is left out of the next snapshot. The decision is taken when a
    pair is mined and stored with it (the annotation page shows it), so a changed policy applies to pairs
    mined after the change."""

    model_config = ConfigDict(extra="forbid")

    auto_accept: list[str] = Field(
        default_factory=lambda: ["edit", "choice", "regenerate"],
        description="Pair sources trusted without review: edit (the user's correction over the answer it "
        "corrects), choice (an annotator's choice), regenerate (a regeneration rated up over the answer "
        "rated down). thumbs pairs (two different prompts' answers) and candidate pairs wait for review.",
    )

    @field_validator("auto_accept")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(check_known(v, PAIR_SOURCES, "feedback kind")))


class MiningConfig(BaseModel):
    """Rules and thresholds that turn requests + feedback into preference pairs and SFT examples."""

    pairs_from_edits: bool = Field(
        True, description="Edit → pair (chosen = the edit, rejected = the original)."
    )
    pairs_from_regenerations: bool = Field(
        True, description="A regenerated answer rated up over the original → pair."
    )
    regenerate_requires_thumbs_down: bool = Field(
        True, description="The replaced answer must have been rated down (not just left unrated)."
    )
    pairs_from_thumbs: bool = Field(
        True, description="Up- vs down-rated answers to the same or a near-identical prompt → pair."
    )
    near_prompt_threshold: float = Field(
        0.85, description="MinHash Jaccard above which two prompts count as the same prompt."
    )
    max_pairs_per_prompt: int = Field(4, description="Cap on thumbs pairs mined from one prompt group.")
    sft_from_thumbs_up: bool = Field(True, description="Answers rated up → SFT examples.")
    kto_from_thumbs: bool = Field(
        True, description="Answers rated up or down → KTO examples (unpaired; the latest rating counts)."
    )
    trust: TrustPolicy = Field(default_factory=TrustPolicy)
    sft_from_edits: bool = Field(True, description="Edited answers → SFT examples.")
    dedup_threshold: float = Field(
        0.9, description="MinHash Jaccard above which two pairs (or examples) are near-duplicates."
    )
    scrub_pii: bool = Field(True, description="Replace emails, phones, ID/card numbers and secrets.")
    eval_guard: bool = Field(
        True,
        description="Drop mined items that contain or duplicate evaluation text: every set the gates use "
        "(MMLU, CMMLU, domain and general held-out, from the eval section) plus eval_sets.",
    )
    eval_sets: list[str] = Field(
        default_factory=list,
        description="More JSONL files/folders of evaluation text; overlapping items are dropped.",
    )
    refusal_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSALS),
        description="Regexes marking refusals; unlabelled refusals are skipped.",
    )
    min_chars: int = Field(1, description="Answers shorter than this are skipped.")
    heldout_pairs: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Share of prompts whose mined pairs, SFT and KTO examples are held out of training, so "
        "the gates can measure the preference margin on pairs no stage trained on (by a hash of the "
        "prompt: a prompt stays on its side in every cycle).",
    )
    heldout_min_prompts: int = Field(
        10,
        ge=1,
        description="Hold out only once the export has pairs for at least this many prompts (fewer: all train).",
    )
