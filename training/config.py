"""TRL-style `*Config` dataclasses for the three stages: every field has a default and help text.

These are Keel's recipe schema, not TRL's classes: a recipe stays small and readable, and the stage
runners translate it into `trl.SFTConfig` / `trl.DPOConfig`. Validation goes through pydantic so a bad
recipe key or type is a one-line error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from training.errors import TrainingError


class RecipeError(TrainingError):
    """A recipe problem worth one line."""


def read_recipe(path: Path) -> dict[str, Any]:
    """A recipe (or any Keel YAML mapping file): the one reader, with one-line errors."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise RecipeError(f"file not found: {path}") from None
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path} must hold a mapping at the top level")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=3", "c=[x, y]"]`` → ``{"a": {"b": 3}, "c": ["x", "y"]}``; values are parsed as YAML.

    The one override parser: recipes (flat keys) and the platform's ``--set section.key=value`` use it.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise RecipeError(f"override {item!r}: the value is not valid YAML") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return out


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class StageConfig:
    """Fields every stage shares."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    model: str = _f("base", "Parent checkpoint folder ('base': the platform's base model).")
    dataset: str = _f("", "Prepared dataset snapshot folder (from `keel data prepare`).")
    output_dir: str = _f("", "Checkpoint folder to create ('' : <checkpoints>/<stage>-<time>).")
    version: str = _f("", "Version name written to the manifest ('' : the output folder name).")
    max_length: int = _f(512, "Tokens per training sequence (packed length for CPT).")
    learning_rate: float = _f(2e-5, "Peak learning rate.")
    lr_scheduler_type: str = _f("cosine", "transformers scheduler name.")
    warmup_ratio: float = _f(0.1, "Share of steps spent warming up.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    per_device_train_batch_size: int = _f(2, "Sequences per device per micro-step.")
    gradient_accumulation_steps: int = _f(1, "Micro-steps per optimizer step.")
    num_train_epochs: float = _f(1.0, "Epochs (ignored when max_steps > 0).")
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1: use epochs).")
    max_train_samples: int = _f(0, "Use only the first N training rows (0: all). For smoke runs.")
    logging_steps: int = _f(1, "Log every N steps.")
    save_steps: int = _f(100, "Save a resumable trainer state every N steps.")
    save_total_limit: int = _f(2, "Resumable states kept.")
    eval_steps: int = _f(0, "Evaluate every N steps (0: only at the end when eval data exists).")
    seed: int = _f(42, "Random seed.")
    bf16: bool | Literal["auto"] = _f(
        False, "bf16 autocast over fp32 weights (auto: where the GPU or CPU has native bf16)."
    )
    gradient_checkpointing: bool = _f(False, "Trade compute for memory.")
    deepspeed_stage: int = _f(-1, "DeepSpeed ZeRO stage 0-3 (-1: no DeepSpeed).")
    deepspeed_offload: Literal["none", "cpu"] = _f("none", "Offload optimizer (and params for stage 3).")
    deepspeed_config: str = _f("", "A DeepSpeed JSON to use instead of the generated one.")
    lora_r: int = _f(0, "LoRA rank (0: full fine-tuning). Adapters are merged on save.")
    lora_alpha: int = _f(16, "LoRA alpha.")
    lora_dropout: float = _f(0.05, "LoRA dropout.")
    lora_target_modules: list[str] = _f(["q_proj", "k_proj", "v_proj", "o_proj"], "Modules LoRA wraps.")
    report: bool = _f(True, "Write report.html/report.png into the checkpoint.")
    num_threads: int = _f(0, "torch CPU threads (0: torch default).")
    max_wall_clock_s: float = _f(
        0.0, "Stop cleanly before this many seconds of training (0: no limit); the checkpoint is still saved."
    )
    max_train_tokens: int = _f(0, "Stop cleanly after this many input tokens (0: no limit).")
    lr_decay_clock: Literal["steps", "budget"] = _f(
        "steps",
        "budget: the LR schedule's decay also follows the share of max_wall_clock_s used (whichever of steps "
        "and time is further along), so a run its budget stops still ends at the schedule's floor.",
    )

    stage: str = field(default="", init=False, metadata={"help": "Set by the subclass."})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CPTConfig(StageConfig):
    """Continued pre-training: plain next-token loss on packed text."""

    learning_rate: float = _f(2e-5, "Peak LR (seeds: 1e-5 to 5e-5).")
    freeze_bottom_pct: float = _f(0.0, "Freeze the bottom N% of decoder layers (forgetting defence).")
    embed_lr_ratio: float = _f(1.0, "LR multiplier for embed_tokens/lm_head (e.g. 0.1: ten times smaller).")
    merge_alpha: float = _f(0.0, "After training: w = (1-alpha)*trained + alpha*parent (0: off).")
    early_stop_margin: float = _f(0.0, "Stop when general ppl rises above (1+margin)*start (0: off).")
    packing: bool = _f(True, "Pack documents into max_length sequences.")
    max_eval_samples: int = _f(64, "Held-out documents per eval set (keeps eval cheap).")

    def __post_init__(self) -> None:
        self.stage = "cpt"


@dataclass
class SFTConfig(StageConfig):
    """Supervised fine-tuning on chat data, loss on assistant turns only."""

    assistant_only_loss: bool = _f(True, "Loss on assistant tokens only (system/user tokens get -100).")
    chat_template_path: str = _f("", "A Jinja chat template with {% generation %} markers ('' : derived).")
    packing: bool = _f(False, "Pack conversations (keeps the assistant mask).")

    def __post_init__(self) -> None:
        self.stage = "sft"


@dataclass
class DPOConfig(StageConfig):
    """Direct preference optimisation; the reference model is the parent checkpoint."""

    learning_rate: float = _f(1e-6, "Peak LR (TRL default).")
    beta: float = _f(0.1, "DPO temperature.")
    loss_type: list[str] = _f(["sigmoid"], "TRL loss types (sigmoid, ipo, hinge, ...).")
    ref_model: str = _f("", "Reference model ('' : the parent, i.e. `model`).")

    def __post_init__(self) -> None:
        self.stage = "dpo"


STAGES: dict[str, type[StageConfig]] = {"cpt": CPTConfig, "sft": SFTConfig, "dpo": DPOConfig}


def make_config(stage: str, data: dict[str, Any]) -> StageConfig:
    """Validate a recipe mapping into the stage's config (unknown keys and bad types are errors)."""
    if stage not in STAGES:
        raise RecipeError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")
    data = {k: v for k, v in data.items() if k != "stage"}
    cls = STAGES[stage]
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "recipe"
        raise RecipeError(f"{stage} recipe: {where}: {err['msg']}") from None


def help_text(stage: str) -> str:
    cls = STAGES[stage]
    return "\n".join(
        f"{f.name} = {getattr(cls(), f.name)!r}: {f.metadata.get('help', '')}" for f in fields(cls) if f.init
    )
