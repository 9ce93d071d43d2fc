"""The stages' configs *are* TRL's: `CPTConfig`/`SFTConfig` extend `trl.SFTConfig`, `DPOConfig`
extends `trl.DPOConfig`, `KTOConfig` extends `trl.KTOConfig`, and the stage hands the config itself to the
trainer as its ``args``.

`KeelArgs` adds Keel's own fields (the parent model, the dataset snapshot, budgets, LoRA, DeepSpeed by
stage number) and changes a few TrainingArguments defaults to CPU-first ones (a small batch, cosine,
logging every step, no gradient checkpointing, fp32). Every other TRL/transformers field is a recipe key
as it is, under its own name. `make_config` validates a recipe mapping field by field, so an unknown
key or a bad value is a one-line error that names it.

Recipe files and overrides are read by training.recipe, which does not import trl: the platform's CLI
reads recipes on every call.
"""

from __future__ import annotations

import copy
import difflib
import functools
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import trl
from pydantic import TypeAdapter, ValidationError
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError

from training.recipe import RecipeError, parse_overrides, read_recipe

__all__ = [
    "CPTConfig",
    "DPOConfig",
    "KTOConfig",
    "KeelArgs",
    "RecipeError",
    "SFTConfig",
    "STAGES",
    "help_text",
    "make_config",
    "parse_overrides",
    "read_recipe",
]


def _f(default: Any, help: str) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class KeelArgs:
    """Keel's fields and defaults, mixed in before the TRL config class."""

    stage: ClassVar[str] = ""

    # Keel's own fields
    model: str = _f("base", "Parent checkpoint folder ('base': the platform's base model).")
    dataset: str = _f("", "Prepared dataset snapshot folder (from `keel data prepare`).")
    version: str = _f("", "Version name written to the manifest ('' : the output folder name).")
    max_train_samples: int = _f(0, "Use only the first N training rows (0: all). For smoke runs.")
    deepspeed_stage: int = _f(
        -1, "DeepSpeed ZeRO stage 0-3 (-1: no DeepSpeed); fills `deepspeed` unless that names a JSON."
    )
    deepspeed_offload: Literal["none", "cpu"] = _f("none", "Offload optimizer (and params for stage 3).")
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

    # TrainingArguments / TRL fields with Keel's (CPU-first) defaults
    output_dir: str = _f(
        "", "The final checkpoint folder ('' : <checkpoints>/<stage>-<time>); trainer states go beside it."
    )
    max_length: int | None = _f(512, "Tokens per training sequence (packed length for CPT).")
    learning_rate: float = _f(2e-5, "Peak learning rate.")
    lr_scheduler_type: str = _f("cosine", "transformers scheduler name.")
    warmup_steps: float = _f(0.1, "Warm-up steps; a float below 1 is a share of all steps.")
    per_device_train_batch_size: int = _f(2, "Sequences per device per micro-step.")
    num_train_epochs: float = _f(1.0, "Epochs (ignored when max_steps > 0).")
    logging_steps: float = _f(1, "Log every N steps.")
    save_steps: float = _f(100, "Save a resumable trainer state every N steps.")
    save_total_limit: int | None = _f(2, "Resumable states kept.")
    eval_steps: float | None = _f(0, "Evaluate every N steps (0: only at the end when eval data exists).")
    bf16: bool | Literal["auto"] | None = _f(
        False, "bf16 autocast over fp32 weights (auto: where the GPU or CPU has native bf16)."
    )
    gradient_checkpointing: bool = _f(
        False, "Trade compute for memory (TRL's default; off for small CPU runs)."
    )
    report_to: None | str | list[str] = _f("none", "Trackers (none: metrics go to the checkpoint's report).")
    disable_tqdm: bool | None = _f(False, "Hide the progress bar (the cycle's log shows it).")
    include_num_input_tokens_seen: str | bool = _f(
        "all", "Count input tokens (the token budget and the manifest read it)."
    )

    def __post_init__(self) -> None:
        import torch

        if self.bf16 == "auto":
            self.bf16 = native_bf16()
        if not torch.cuda.is_available():
            self.use_cpu = True
        if self.deepspeed is None and self.deepspeed_stage >= 0:
            from training.deepspeed import zero_config

            self.deepspeed = zero_config(self.deepspeed_stage, self.deepspeed_offload)
        if self.deepspeed:
            from training.deepspeed import ensure_single_process_env

            # TrainingArguments sets DeepSpeed up here; a plain `python` run needs a world of one first
            ensure_single_process_env()
        if self.eval_steps and self.eval_strategy == "no":
            self.eval_strategy = "steps"
        super().__post_init__()  # type: ignore[misc]

    def for_trainer(self, work: Path, has_eval: bool) -> Any:
        """These arguments as the Trainer takes them: its output_dir is the run's work folder (resumable
        states), and it evaluates on a schedule only when the stage has eval data."""
        from transformers.trainer_utils import IntervalStrategy

        args = copy.copy(self)
        args.output_dir = str(work)
        if not has_eval or not self.eval_steps:
            args.eval_strategy = IntervalStrategy.NO
        return args


def native_bf16() -> bool:
    """bf16 where it is native (a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX); emulated bf16 on an
    AVX2 CPU is slower than fp32."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    from training.eval.model import cpu_has_fast_bf16

    return cpu_has_fast_bf16()


@dataclass
class CPTConfig(KeelArgs, trl.SFTConfig):
    """Continued pre-training: plain next-token loss on packed text."""

    stage: ClassVar[str] = "cpt"

    learning_rate: float = _f(2e-5, "Peak LR (seeds: 1e-5 to 5e-5).")
    freeze_bottom_pct: float = _f(0.0, "Freeze the bottom N% of decoder layers (forgetting defence).")
    embed_lr_ratio: float = _f(1.0, "LR multiplier for embed_tokens/lm_head (e.g. 0.1: ten times smaller).")
    merge_alpha: float = _f(0.0, "After training: w = (1-alpha)*trained + alpha*parent (0: off).")
    early_stop_margin: float = _f(0.0, "Stop when general ppl rises above (1+margin)*start (0: off).")
    packing: bool = _f(True, "Pack documents into max_length sequences.")
    completion_only_loss: bool | None = _f(False, "Plain text: the loss is on every token.")
    max_eval_samples: int = _f(64, "Held-out documents per eval set (keeps eval cheap).")


@dataclass
class SFTConfig(KeelArgs, trl.SFTConfig):
    """Supervised fine-tuning on chat data, loss on assistant turns only."""

    stage: ClassVar[str] = "sft"

    assistant_only_loss: bool = _f(True, "Loss on assistant tokens only (system/user tokens get -100).")
    chat_template_path: str | None = _f(
        None, "A .jinja chat template with {% generation %} markers (TRL applies it; unset: derived)."
    )
    packing: bool = _f(False, "Pack conversations (keeps the assistant mask).")


@dataclass
class DPOConfig(KeelArgs, trl.DPOConfig):
    """Direct preference optimisation; the reference model is the parent checkpoint."""

    stage: ClassVar[str] = "dpo"

    learning_rate: float = _f(1e-6, "Peak LR (TRL default).")
    beta: float = _f(0.1, "DPO temperature.")
    loss_type: list[str] = _f(["sigmoid"], "TRL loss types (sigmoid, ipo, hinge, ...).")
    ref_model: str = _f("", "Reference model ('' : the parent, i.e. `model`).")


@dataclass
class KTOConfig(KeelArgs, trl.KTOConfig):
    """KTO on unpaired signals (an answer rated up or down); the reference model is the parent checkpoint."""

    stage: ClassVar[str] = "kto"

    learning_rate: float = _f(1e-6, "Peak LR (TRL default).")
    beta: float = _f(0.1, "KTO temperature.")
    loss_type: str = _f("kto", "TRL loss type (kto, apo_zero_unpaired).")
    ref_model: str = _f("", "Reference model ('' : the parent, i.e. `model`).")
    class_weights: Literal["auto", "none"] = _f(
        "auto",
        "auto: set desirable_weight from the label counts so λD·nD / λU·nU is 7/6, the middle of the "
        "KTO paper's recommended [1, 4/3] (undesirable_weight stays as given); none: use the weights as given.",
    )
    min_rows_per_class: int = _f(1, "Fewer rows labelled up (or down) than this: the run refuses to start.")

    def balance(self, desirable: int, undesirable: int) -> None:
        """Class weights for ``desirable`` up- and ``undesirable`` down-rated rows (thumbs are rarely
        balanced: the simulation's users rate up more often than down)."""
        if self.class_weights == "auto" and desirable and undesirable:
            self.desirable_weight = round(7 / 6 * undesirable * self.undesirable_weight / desirable, 4)


STAGES: dict[str, type[KeelArgs]] = {
    "cpt": CPTConfig,
    "sft": SFTConfig,
    "dpo": DPOConfig,
    "kto": KTOConfig,
}


@functools.cache
def _adapters(cls: type) -> dict[str, TypeAdapter | None]:
    """A validator per init field; None where the type is a class pydantic cannot validate (TRL's own
    post-init checks those)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, TypeAdapter | None] = {}
    for f in fields(cls):
        if not f.init:
            continue
        try:
            out[f.name] = TypeAdapter(hints[f.name])
        except (PydanticSchemaGenerationError, PydanticUserError):
            out[f.name] = None
    return out


def make_config(stage: str, data: dict[str, Any]) -> KeelArgs:
    """Validate a recipe mapping into the stage's config (unknown keys and bad values are errors)."""
    if stage not in STAGES:
        raise RecipeError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")
    cls = STAGES[stage]
    adapters = _adapters(cls)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "stage":
            continue
        if key not in adapters:
            near = difflib.get_close_matches(key, adapters, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise RecipeError(f"{stage} recipe: unknown key {key!r}{hint}")
        adapter = adapters[key]
        try:
            values[key] = adapter.validate_python(value) if adapter is not None else value
        except ValidationError as e:
            raise RecipeError(f"{stage} recipe: {key}: {e.errors()[0]['msg']}") from None
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise RecipeError(f"{stage} recipe: {str(e).strip().splitlines()[0]}") from None


def keel_fields(cls: type[KeelArgs]) -> list[str]:
    """The fields Keel declares or re-defaults (the rest are TRL's and transformers' as they are)."""
    names: list[str] = []
    for klass in (KeelArgs, cls):
        names += [n for n in klass.__dict__.get("__annotations__", {}) if n != "stage" and n not in names]
    return names


def help_text(stage: str) -> str:
    cls = STAGES[stage]
    defaults = {f.name: f for f in fields(cls)}
    lines = []
    for name in keel_fields(cls):
        f = defaults[name]
        value = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        lines.append(f"{name} = {value!r}: {f.metadata.get('help', '')}")
    base = cls.__mro__[2]
    rest = len(defaults) - len(lines)
    lines.append(
        f"... and {rest} more: every field of {base.__module__.split('.')[0]}.{base.__name__} and "
        "transformers.TrainingArguments, under its own name and with its own default."
    )
    return "\n".join(lines)
