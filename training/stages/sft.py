"""SFT: TRL SFTTrainer on `messages` rows, loss on assistant turns only (multi-turn)."""

from __future__ import annotations

from pathlib import Path

from training.chat_template import with_generation_markers
from training.config import SFTConfig
from training.stages import common


def build_trainer(cfg: SFTConfig, paths: common.RunPaths, train_path: Path, callbacks=()):
    """The SFTTrainer for ``cfg`` (separate from `main` so tests can inspect its label mask)."""
    import trl

    tokenizer = common.load_tokenizer(cfg.model)
    original_template = tokenizer.chat_template
    if cfg.assistant_only_loss and cfg.chat_template_path is None:
        # the model's own template with {% generation %} markers (TRL applies a chat_template_path itself)
        tokenizer.chat_template = with_generation_markers(original_template or "")
    trainer = trl.SFTTrainer(
        model=common.load_model(cfg.model),
        args=cfg.for_trainer(paths.work, has_eval=False),
        train_dataset=common.read_rows(train_path, cfg.max_train_samples),
        processing_class=tokenizer,
        peft_config=common.peft_config(cfg),
        callbacks=list(callbacks),
    )
    return trainer, tokenizer, original_template


def main(cfg: SFTConfig, resume: bool = False) -> common.RunResult:
    common.setup_torch(cfg)
    paths, snap = common.prepare_run(cfg, resume)
    recorder = common.make_recorder()
    budget = common.make_budget(cfg, paths, resume)
    trainer, tokenizer, original_template = build_trainer(cfg, paths, snap.train, [recorder, budget])
    steps = common.run_training(trainer, paths, resume, recorder)
    tokenizer.chat_template = original_template  # serve with the model's own template
    return common.save_final(trainer, tokenizer, cfg, paths, snap, steps, recorder, budget)
