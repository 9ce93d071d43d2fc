"""KTO on unpaired up/down rows: real steps on the embedded model, class weights from the label counts."""

from __future__ import annotations

import json

import pytest

from tests.training.conftest import KTO_ROWS, TINY, write_jsonl
from training.__main__ import run_stage
from training.config import make_config
from training.data.snapshot import write_snapshot
from training.stages.common import RunError

pytestmark = pytest.mark.slow


def test_kto_trains_and_weighs_the_classes(base_model_dir, tiny_data, tmp_path):
    out = tmp_path / "kto"
    res = run_stage(
        "kto",
        {
            **TINY,
            "model": str(base_model_dir),
            "dataset": str(tiny_data["kto"]),
            "output_dir": str(out),
            "max_steps": 3,
            "learning_rate": 5e-5,
        },
    )
    assert res.steps == 3 and res.metrics["loss"] < res.metrics["first_loss"]
    m = json.loads((out / "manifest.json").read_text())
    up = sum(r["label"] for r in KTO_ROWS * 2)
    down = len(KTO_ROWS * 2) - up
    assert m["labels"] == {"desirable": up, "undesirable": down} and up != down
    # λD·nD / λU·nU in the middle of the KTO paper's [1, 4/3]
    w = m["class_weights"]
    assert 1 <= w["desirable"] * up / (w["undesirable"] * down) <= 4 / 3
    assert m["stage"] == "kto" and m["reference"] == str(base_model_dir)
    assert (out / "model.safetensors").exists() and not list(tmp_path.glob(".kto.*"))


def test_kto_with_one_class_refuses_before_loading(base_model_dir, tmp_path):
    only_up = write_snapshot(
        tmp_path / "up",
        "kto",
        lambda t: {"rows": len(write_jsonl(t / "train.jsonl", [KTO_ROWS[0]] * 4).read_text().splitlines())},
    )
    recipe = {"model": str(base_model_dir), "dataset": str(only_up.path), "output_dir": str(tmp_path / "o")}
    with pytest.raises(RunError, match="4 rows rated up and 0 rated down; KTO needs at least 1 of each"):
        run_stage("kto", recipe)
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))


def test_kto_config_is_trls():
    import trl

    cfg = make_config(
        "kto", {"model": "m", "output_dir": "o", "class_weights": "none", "desirable_weight": 2.0}
    )
    assert isinstance(cfg, trl.KTOConfig)
    cfg.balance(10, 1)
    assert cfg.desirable_weight == 2.0  # as given
