"""Config for the annotation queue and the candidate sampler (filled by keel.config)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AnnotationConfig(BaseModel):
    lease_s: float = Field(300.0, description="How long an item stays reserved for one annotator.")
    session_ttl_s: float = Field(
        8 * 3600.0, gt=0, description="An annotation page session ends this long after login (log in again)."
    )
    double_annotate_fraction: float = Field(
        0.1, ge=0.0, le=1.0, description="Share of pairs reviewed by two annotators (for agreement stats)."
    )
    candidate_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of logged prompts that get a second answer (0: sampler off)."
    )
    candidate_interval_s: float = Field(5.0, description="How often the sampler looks for new requests.")
    candidate_batch: int = Field(4, description="Most second answers generated per sampler tick.")
    candidate_temperature: float = Field(1.0, description="Sampling temperature of the second answer.")
    candidate_max_tokens: int = Field(256, description="max_tokens of the second answer.")
    export_dir: str = Field(
        "", description="Where `keel export` writes snapshots (empty: <data_dir>/datasets)."
    )
