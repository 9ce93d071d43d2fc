"""Typed config for mining and export. The platform's config module fills it; flywheel never reads files."""

from __future__ import annotations

from pydantic import BaseModel, Field

DEFAULT_REFUSALS = [
    r"(?i)\bI(?:'m| am)? (?:sorry,? )?(?:but )?(?:I )?(?:can(?:no|')t|cannot|am unable to|won't) (?:help|assist|provide|answer)",
    r"(?i)\bas an AI (?:language )?model\b",
    r"(?:抱歉|对不起)[，, ]*(?:我)?(?:无法|不能)",
]


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
