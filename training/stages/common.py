"""The run skeleton every stage shares: setup → train → save (temp folder, rename, manifest last).

A run uses two folders next to each other:
    <output_dir>            the final checkpoint (appears only when complete)
    .<name>.work/           resumable trainer states (checkpoint-N), metrics.jsonl, resolved config
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keelcommon.files import fsync_dir, out_of_space, write_json_atomic
from training.checkpoint import (
    PROGRESS_FILE,
    CheckpointError,
    build_manifest,
    last_complete_state,
    read_manifest,
    write_manifest,
)
from training.config import KeelArgs
from training.data.snapshot import Snapshot, load_snapshot
from training.errors import TrainingError


class RunError(TrainingError, RuntimeError):
    """A run problem worth one line."""


@dataclass
class RunPaths:
    output: Path
    work: Path
    tmp: Path

    @classmethod
    def for_output(cls, output: Path) -> RunPaths:
        output = Path(output).resolve()
        return cls(
            output, output.parent / f".{output.name}.work", output.parent / f".{output.name}.tmp-final"
        )

    def last_state(self) -> Path | None:
        """Newest trainer state whose files are whole (a save cut short falls back to the one before)."""
        return last_complete_state(self.work)


@dataclass
class RunResult:
    output: Path
    steps: int
    metrics: dict[str, Any] = field(default_factory=dict)


def prepare_run(cfg: KeelArgs, resume: bool) -> tuple[RunPaths, Snapshot]:
    """Check inputs and folders before anything heavy is loaded."""
    if not cfg.output_dir:
        raise RunError("output_dir is empty")
    model = Path(cfg.model)
    if not (model / "config.json").exists():
        raise RunError(f"model {model} is not a Hugging Face model folder (no config.json)")
    if not cfg.dataset:
        raise RunError("dataset is empty: prepare one with `keel data prepare`")
    try:
        snap = load_snapshot(cfg.dataset)
    except (OSError, ValueError) as e:
        raise RunError(str(e)) from None
    paths = RunPaths.for_output(Path(cfg.output_dir))
    if paths.output.exists():
        raise RunError(f"output {paths.output} already exists")
    if paths.work.exists() and not resume and is_main_process():
        if paths.last_state() is not None:
            raise RunError(f"{paths.work} holds an unfinished run: pass --resume, or delete it to start over")
        shutil.rmtree(paths.work)
    if resume and paths.last_state() is None:
        raise RunError(f"--resume: no saved state in {paths.work}")
    paths.work.mkdir(parents=True, exist_ok=True)
    if is_main_process():
        (paths.work / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
    return paths, snap


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def setup_torch(cfg: KeelArgs) -> None:
    import torch

    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)


def load_model(path: str):
    import torch
    from transformers import AutoModelForCausalLM

    # fp32 master weights always: bf16 is the Trainer's autocast. Weights held in bf16 lose most AdamW
    # updates to rounding at CPT learning rates (an update ~1e-3 of a weight is below bf16's 8-bit mantissa).
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def peft_config(cfg: KeelArgs):
    if cfg.lora_r <= 0:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        task_type="CAUSAL_LM",
    )


def read_rows(path: Path, limit: int = 0):
    """A `datasets.Dataset` from a JSONL file (first ``limit`` rows when limit > 0)."""
    from datasets import Dataset

    from training.data.snapshot import iter_jsonl

    rows = []
    for _, row in iter_jsonl(path):
        rows.append(row)
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise RunError(f"dataset {path} is empty")
    return Dataset.from_list(rows)


def make_recorder():
    """A TrainerCallback that keeps every log line (plus perplexities) for the manifest and report."""
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []
            self.sink: Path | None = None
            self.resumed_from: str | None = None

        def on_step_end(self, args, state, control, **kw):
            # The Trainer also saves a resumable state after the last step; the final checkpoint is
            # written right after, so that 3x-model-size write (weights + optimizer) is pure overhead.
            if state.max_steps > 0 and state.global_step >= state.max_steps:
                control.should_save = False

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs:
                return
            rec = {"step": state.global_step, **logs}
            for k, v in list(logs.items()):
                if k.startswith("eval_") and k.endswith("_loss") and isinstance(v, int | float):
                    rec[k[: -len("_loss")] + "_ppl"] = math.exp(min(v, 50.0))
            self.records.append(rec)
            if self.sink is not None and state.is_world_process_zero:
                with self.sink.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")

    return Recorder()


BUDGET_FILE = "budget.json"


def lr_decay(scheduler_type: str, progress: float) -> float:
    """The schedule's decay factor at ``progress`` (0..1) of the run, after warm-up: cosine → half a cosine
    wave, linear → a straight line, both to 0; constant schedules do not decay."""
    if scheduler_type.startswith("cosine"):
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if scheduler_type.startswith("linear") or scheduler_type.startswith("polynomial"):
        return 1.0 - progress
    return 1.0


def make_budget(cfg: KeelArgs, paths: RunPaths, resume: bool):
    """A TrainerCallback that stops training cleanly when the wall-clock or token budget runs out.

    The Trainer then returns normally and the stage saves its complete final checkpoint. The wall clock
    counts from the start of `train()` (first evaluation included) plus, on resume, the time the earlier
    attempts trained (kept in the work folder), and it stops one step early when the next step would end
    past the budget, so a nightly cycle ends inside its window."""
    import time

    from transformers import TrainerCallback

    budget_path = paths.work / BUDGET_FILE

    class Budget(TrainerCallback):
        def __init__(self) -> None:
            self.prior_s = 0.0
            if resume and budget_path.exists():
                self.prior_s = float(
                    json.loads(budget_path.read_text(encoding="utf-8")).get("elapsed_s", 0.0)
                )
            self.t0 = time.monotonic()
            self.last = self.t0
            self.step_s = 0.0  # the slowest recent step (the next one is predicted from it)
            self.stopped_by: str | None = None
            self.tokens = 0
            self.loss: float | None = None
            self.first_step = 0
            self.first_tokens = 0

        def elapsed(self) -> float:
            return self.prior_s + time.monotonic() - self.t0

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = self.last = time.monotonic()
            # a resumed run starts at a saved step: its rate counts only what this process trained
            self.first_step = state.global_step
            self.first_tokens = int(state.num_input_tokens_seen or 0)

        def on_step_end(self, args, state, control, **kw):
            now = time.monotonic()
            self.step_s = max(now - self.last, 0.8 * self.step_s)
            self.last = now
            self.tokens = int(state.num_input_tokens_seen or 0)
            elapsed = self.elapsed()
            if cfg.lr_decay_clock == "budget" and cfg.max_wall_clock_s > 0:
                # the scheduler has just set the next step's LR from the step count; the budget may be
                # further along (the budget, not max_steps, ends a CPU run): decay by whichever is
                self.pace(
                    kw.get("optimizer"),
                    kw.get("lr_scheduler"),
                    (elapsed + self.step_s) / cfg.max_wall_clock_s,
                )
            if state.is_world_process_zero:
                write_json_atomic(budget_path, {"elapsed_s": elapsed, "tokens": self.tokens}, indent=None)
                write_json_atomic(paths.work / PROGRESS_FILE, self.progress(state, elapsed), indent=None)
            if cfg.max_wall_clock_s > 0 and elapsed + self.step_s > cfg.max_wall_clock_s:
                self.stopped_by = "wall_clock"
            elif cfg.max_train_tokens > 0 and self.tokens >= cfg.max_train_tokens:
                self.stopped_by = "tokens"
            if self.stopped_by:
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and isinstance(logs.get("loss"), int | float):
                self.loss = float(logs["loss"])

        def progress(self, state, elapsed: float) -> dict[str, Any]:
            """Step n of N, the last logged loss, tokens/s and an ETA: the nearer of the step count's end
            (at this run's mean step time) and the wall-clock budget's."""
            run_s = max(time.monotonic() - self.t0, 1e-9)
            steps_here = max(state.global_step - self.first_step, 0)
            etas = []
            if state.max_steps and steps_here:
                etas.append((state.max_steps - state.global_step) * run_s / steps_here)
            if cfg.max_wall_clock_s > 0:
                etas.append(max(cfg.max_wall_clock_s - elapsed, 0.0))
            return {
                "step": state.global_step,
                "max_steps": state.max_steps or None,
                "loss": self.loss,
                "tokens": self.tokens,
                "tokens_per_s": round((self.tokens - self.first_tokens) / run_s, 1),
                "elapsed_s": round(elapsed, 1),
                "eta_s": round(min(etas), 1) if etas else None,
                "updated_at": time.time(),
            }

        def pace(self, optimizer, scheduler, progress: float) -> None:
            if optimizer is None:
                return
            decay = lr_decay(cfg.lr_scheduler_type, min(max(progress, 0.0), 1.0))
            for g in optimizer.param_groups:
                peak = g.get("initial_lr", g["lr"])
                g["lr"] = min(g["lr"], peak * decay)
            if scheduler is not None and hasattr(scheduler, "_last_lr"):  # what the Trainer logs
                scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]

        def summary(self) -> dict[str, Any]:
            return {
                "max_wall_clock_s": cfg.max_wall_clock_s,
                "lr_decay_clock": cfg.lr_decay_clock,
                "max_train_tokens": cfg.max_train_tokens,
                "stopped_by": self.stopped_by,
                "train_s": round(self.elapsed(), 2),
                "tokens": self.tokens,
            }

    return Budget()


def resume_records(paths: RunPaths) -> list[dict[str, Any]]:
    sink = paths.work / "metrics.jsonl"
    if not sink.exists():
        return []
    return [json.loads(line) for line in sink.read_text(encoding="utf-8").splitlines() if line.strip()]


def final_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Last value of each numeric metric; ``first_loss`` too, to show the fall."""
    out: dict[str, Any] = {}
    for r in records:
        for k, v in r.items():
            if k != "step" and isinstance(v, int | float):
                if k == "loss" and "first_loss" not in out:
                    out["first_loss"] = v
                out[k] = v
    return out


def run_training(trainer, paths: RunPaths, resume: bool, recorder) -> int:
    """Train (resuming from the last saved state if asked); returns the global step reached.

    The state resumed from is remembered in ``recorder.resumed_from`` for the manifest."""
    previous = resume_records(paths) if resume else []
    recorder.records[:0] = previous
    recorder.sink = paths.work / "metrics.jsonl"
    if not resume and recorder.sink.exists():
        recorder.sink.unlink()
    state = paths.last_state() if resume else None
    recorder.resumed_from = state.name if state else None
    trainer.train(resume_from_checkpoint=str(state) if state else None)
    return trainer.state.global_step


def save_final(
    trainer,
    tokenizer,
    cfg: KeelArgs,
    paths: RunPaths,
    snap: Snapshot,
    steps: int,
    recorder,
    budget,
    post_save=None,
    extra: dict[str, Any] | None = None,
) -> RunResult:
    """Write the final checkpoint: weights (LoRA merged), tokenizer, report; manifest last; rename.

    ``recorder`` and ``budget`` are the run's callbacks (make_recorder, make_budget): the log records,
    the state resumed from and how the budget ended go into the report and the manifest. A save that fails
    (a full disk) leaves no half-written final folder (the main rank removes it) and keeps the resumable
    states; a full disk is a one-line CheckpointError."""
    try:
        return _save_final(trainer, tokenizer, cfg, paths, snap, steps, recorder, budget, post_save, extra)
    except Exception as e:
        if is_main_process():
            shutil.rmtree(paths.tmp, ignore_errors=True)
        if out_of_space(e):  # safetensors and torch wrap the OSError in errors of their own
            raise CheckpointError(
                f"checkpoint {paths.output} not written: no space left on device in {paths.output.parent} "
                f"(nothing half-written was kept; the run's saved states in {paths.work.name} are)"
            ) from e
        raise


def _save_final(
    trainer, tokenizer, cfg, paths: RunPaths, snap, steps: int, recorder, budget, post_save, extra
) -> RunResult:
    records: list[dict[str, Any]] = recorder.records
    if paths.tmp.exists() and is_main_process():
        shutil.rmtree(paths.tmp)
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # peft: ship plain weights vLLM can load
        model = model.merge_and_unload()
        if is_main_process():
            model.save_pretrained(paths.tmp, safe_serialization=True)
    else:
        trainer.save_model(str(paths.tmp))  # all ranks: ZeRO-3 gathers the partitioned weights here
    metrics = final_metrics(records)
    if not is_main_process():
        return RunResult(paths.output, steps, metrics)
    tokenizer.save_pretrained(paths.tmp)
    (paths.tmp / "training_args.bin").unlink(missing_ok=True)
    if post_save is not None:
        post_save(paths.tmp)
    with (paths.tmp / "metrics.jsonl").open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    parent_manifest = read_manifest(Path(cfg.model))
    version = cfg.version or paths.output.name
    summary = {"version": version, "stage": cfg.stage, "steps": steps, **metrics}
    if cfg.report:
        from training.report import write_report

        write_report(paths.tmp, records, f"{cfg.stage} → {version}", summary)
    manifest = build_manifest(
        version=version,
        parent=(parent_manifest.version if parent_manifest else None) or str(Path(cfg.model).resolve()),
        stage=cfg.stage,
        datasets={snap.kind if snap.kind != "file" else "train": snap.hash},
        config=cfg.to_dict(),
        steps=steps,
        metrics=metrics,
        extra={
            "parent_path": str(Path(cfg.model).resolve()),
            "dataset_paths": [str(snap.path)],
            "resumed_from": recorder.resumed_from,
            "budget": budget.summary(),
            "deepspeed": bool(getattr(trainer, "is_deepspeed_enabled", False)),
            "world_size": trainer.args.world_size,
            **(extra or {}),
        },
    )
    write_manifest(paths.tmp, manifest)
    if paths.output.exists():
        raise CheckpointError(f"output {paths.output} appeared while training")
    # Not keelcommon.atomic_folder: every rank writes into paths.tmp (ZeRO-3 gathers the weights there), so
    # it has a fixed name they all know; only the main rank renames it, once the manifest is in.
    os.rename(paths.tmp, paths.output)
    fsync_dir(paths.output.parent)
    # The run finished: its resumable states are no longer needed; keep the log beside the checkpoint.
    shutil.rmtree(paths.work, ignore_errors=True)
    return RunResult(paths.output, steps, metrics)


def train_with_reference(
    trainer_cls, cfg, paths: RunPaths, snap: Snapshot, rows, resume: bool, extra: dict[str, Any]
) -> RunResult:
    """Train and save a preference stage (trl.DPOTrainer, trl.KTOTrainer) whose reference model is the
    parent checkpoint; the reference goes into the manifest beside ``extra``."""
    recorder = make_recorder()
    budget = make_budget(cfg, paths, resume)
    tokenizer = load_tokenizer(cfg.model)
    peft = peft_config(cfg)
    # With LoRA, TRL uses the adapter-disabled policy as the reference (that is the parent); otherwise
    # load the parent explicitly.
    ref = None if peft is not None else load_model(cfg.ref_model or cfg.model)
    trainer = trainer_cls(
        model=load_model(cfg.model),
        ref_model=ref,
        args=cfg.for_trainer(paths.work, has_eval=False),
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=peft,
        callbacks=[recorder, budget],
    )
    steps = run_training(trainer, paths, resume, recorder)
    extra = {"reference": cfg.ref_model or cfg.model, **extra}
    return save_final(trainer, tokenizer, cfg, paths, snap, steps, recorder, budget, extra=extra)
