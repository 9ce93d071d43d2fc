"""KTO: TRL KTOTrainer on unpaired rows {prompt, completion, label}; the reference model is the parent.

Thumbs are unpaired signals: an answer rated up is desirable, one rated down undesirable, with no second
answer to compare it with (that is DPO's job). The up/down imbalance is evened out by class weights
computed from the snapshot's label counts (KTOConfig.class_weights).
"""

from __future__ import annotations

import shutil

from training.config import KTOConfig
from training.stages import common


def label_counts(dataset) -> tuple[int, int]:
    """(desirable, undesirable) rows."""
    labels = [bool(x) for x in dataset["label"]]
    return sum(labels), len(labels) - sum(labels)


def main(cfg: KTOConfig, resume: bool = False) -> common.RunResult:
    import trl

    common.setup_torch(cfg)
    paths, snap = common.prepare_run(cfg, resume)
    rows = common.read_rows(snap.train, cfg.max_train_samples)
    if "label" not in rows.column_names:
        raise common.RunError(
            f"dataset {snap.train} has no 'label' column (KTO rows: prompt, completion, label)"
        )
    up, down = label_counts(rows)
    if min(up, down) < max(cfg.min_rows_per_class, 1):
        if not resume:
            shutil.rmtree(paths.work, ignore_errors=True)
        raise common.RunError(
            f"dataset {snap.train}: {up} rows rated up and {down} rated down; KTO needs at least "
            f"{max(cfg.min_rows_per_class, 1)} of each (min_rows_per_class)"
        )
    cfg.balance(up, down)
    extra = {
        "labels": {"desirable": up, "undesirable": down},
        "class_weights": {"desirable": cfg.desirable_weight, "undesirable": cfg.undesirable_weight},
    }
    return common.train_with_reference(trl.KTOTrainer, cfg, paths, snap, rows, resume, extra=extra)
