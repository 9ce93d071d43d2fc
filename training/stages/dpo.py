"""DPO: TRL DPOTrainer; the reference model is the parent checkpoint. Logs reward margins/accuracy."""

from __future__ import annotations

from training.config import DPOConfig
from training.stages import common


def main(cfg: DPOConfig, resume: bool = False) -> common.RunResult:
    import trl

    common.setup_torch(cfg)
    paths, snap = common.prepare_run(cfg, resume)
    rows = common.read_rows(snap.train, cfg.max_train_samples)
    return common.train_with_reference(trl.DPOTrainer, cfg, paths, snap, rows, resume, extra={})
