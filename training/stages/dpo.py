"""DPO: TRL DPOTrainer; the reference model is the parent checkpoint. Logs reward margins/accuracy."""

from __future__ import annotations

from training.config import DPOConfig
from training.stages import common


def main(cfg: DPOConfig, resume: bool = False) -> common.RunResult:
    import trl

    common.setup_torch(cfg)
    paths, snap = common.prepare_run(cfg, resume)
    recorder = common.make_recorder()
    budget = common.make_budget(cfg, paths, resume)
    tokenizer = common.load_tokenizer(cfg.model)
    peft = common.peft_config(cfg)
    # With LoRA, TRL uses the adapter-disabled policy as the reference (that is the parent); otherwise
    # load the parent explicitly.
    ref = None if peft is not None else common.load_model(cfg.ref_model or cfg.model)
    trainer = trl.DPOTrainer(
        model=common.load_model(cfg.model),
        ref_model=ref,
        args=cfg.for_trainer(paths.work, has_eval=False),
        train_dataset=common.read_rows(snap.train, cfg.max_train_samples),
        processing_class=tokenizer,
        peft_config=peft,
        callbacks=[recorder, budget],
    )
    steps = common.run_training(trainer, paths, resume, recorder)
    extra = {"reference": cfg.ref_model or cfg.model}
    return common.save_final(trainer, tokenizer, cfg, paths, snap, steps, recorder, budget, extra=extra)
