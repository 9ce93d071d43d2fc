"""Typed `cycle` section: what a flywheel cycle runs, when, within which budget, and how it launches.

The platform's config module fills it (defaults.yaml, a user YAML, a profile); flywheel never reads files.
"""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flywheel.canary import CanaryConfig

Stage = Literal["cpt", "sft", "dpo", "kto"]
# KTO last: it refines whichever checkpoint the stages before it left with the thumbs (unpaired) signal
STAGE_ORDER: tuple[Stage, ...] = ("cpt", "sft", "dpo", "kto")


class StageBudget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wall_clock_s: float = Field(
        0.0, ge=0, description="Training stops cleanly after this many seconds (0: no limit)."
    )
    max_tokens: int = Field(0, ge=0, description="Training stops after this many input tokens (0: no limit).")


class StageSettings(BaseModel):
    """One training stage of the cycle: its recipe, overrides and budget."""

    model_config = ConfigDict(extra="forbid")

    recipe: str = Field("", description="Training recipe YAML ('' : training/recipes/smollm2-<stage>.yaml).")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Recipe keys set for cycle runs.")
    budget: StageBudget = Field(default_factory=StageBudget)


class CPTDataSettings(BaseModel):
    """How the CPT snapshot is built: domain documents added or changed since the last cycle + replay."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(
        default_factory=list, description="Domain document folders ([] : the RAG corpus paths)."
    )
    general: list[str] = Field(default_factory=list, description="General replay text (train split).")
    general_eval: list[str] = Field(default_factory=list, description="General held-out text (valid split).")
    eval_sets: list[str] = Field(default_factory=list, description="Evaluation text kept out of training.")
    ratio: str = Field("7:3", description="domain:general by characters.")
    only_changed: bool = Field(
        True, description="Only documents added or changed since the last cycle (the first cycle: all)."
    )
    overrides: dict[str, Any] = Field(default_factory=dict, description="Other `keel data prepare` keys.")


class ScheduleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Run a cycle on the cron schedule inside the platform.")
    cron: str = Field("0 2 * * *", description="Crontab expression (minute hour day month weekday).")
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in.")
    misfire_grace_s: int = Field(
        3600, ge=1, description="A run missed (platform down) by at most this much still runs."
    )
    coalesce: bool = Field(True, description="Several missed runs run once, not once each.")
    interval_s: float = Field(
        0.0,
        ge=0,
        description="Run every N seconds instead of the cron expression (0: use cron; tests, demos).",
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError(f"cron {v!r} needs 5 fields: minute hour day month weekday")
        return v


class LauncherConfig(BaseModel):
    """How training and evaluation child processes start."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "deepspeed", "command"] = Field(
        "local",
        description="local: `python -m training` here; deepspeed: the deepspeed launcher; command: template.",
    )
    nice: int = Field(10, ge=0, le=19, description="CPU niceness of the child (serving keeps priority).")
    threads: int = Field(0, ge=0, description="torch/OpenMP threads of the child (0: leave the default).")
    hostfile: str = Field("", description="deepspeed: the hostfile (one `host slots=N` per line).")
    deepspeed_args: list[str] = Field(
        default_factory=list, description="deepspeed: extra launcher arguments (e.g. --num_gpus 8)."
    )
    template: str = Field(
        "",
        description="command: a command line with {python}, {module}, {args} (e.g. a cluster job submission "
        "that blocks until the job ends).",
    )


class CycleConfig(BaseModel):
    """The `cycle` section."""

    model_config = ConfigDict(extra="forbid")

    stages: list[Stage] = Field(default_factory=lambda: list(STAGE_ORDER), description="Stages a cycle runs.")
    min_cpt_docs: int = Field(1, ge=0, description="Fewer new or changed domain documents: CPT is skipped.")
    min_sft_examples: int = Field(8, ge=0, description="Fewer mined SFT examples: SFT is skipped.")
    min_dpo_pairs: int = Field(
        8, ge=0, description="Fewer pairs to train (reviewed, or trusted by mining.trust): DPO is skipped."
    )
    min_kto_per_class: int = Field(
        4, ge=1, description="Fewer answers rated up, or fewer rated down, than this: KTO is skipped."
    )
    cpt: StageSettings = Field(default_factory=StageSettings)
    sft: StageSettings = Field(default_factory=StageSettings)
    dpo: StageSettings = Field(default_factory=StageSettings)
    kto: StageSettings = Field(default_factory=StageSettings)
    cpt_data: CPTDataSettings = Field(default_factory=CPTDataSettings)
    eval_suite: Literal["gate", "full"] = Field("gate", description="Evaluation suite the gate compares.")
    policy: str = Field("", description="Gate policy YAML ('' : the eval section's policy).")
    eval: dict[str, Any] = Field(
        default_factory=dict, description="Eval settings changed for cycle runs (e.g. gate_per_subject: 4)."
    )
    promote: bool = Field(
        True, description="Promote a candidate that passes (false: record the decision only)."
    )
    router_refit: bool = Field(
        True,
        description="Refit the intent router from route flags (gated on its held-out test half, like a "
        "checkpoint): skipped when there are fewer than min_route_flags flags.",
    )
    min_route_flags: int = Field(1, ge=1, description="Route flags a router refit needs.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    profile: str = Field("", description="Name of the profile this configuration came from (recorded).")

    @field_validator("stages")
    @classmethod
    def _order(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("stages must not repeat")
        return [s for s in STAGE_ORDER if s in v]  # always trained in CPT → SFT → DPO → KTO order

    def stage(self, name: Stage) -> StageSettings:
        return getattr(self, name)
