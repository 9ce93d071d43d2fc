"""CPT forgetting defences, on small real objects (no model load)."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerControl, TrainerState

from training.stages.cpt import average_with_parent, make_early_stop


def test_early_stop_on_general_ppl_rise():
    cb, state = make_early_stop(0.05), TrainerState()
    control = TrainerControl()
    cb.on_evaluate(None, state, control, metrics={"eval_general_loss": 2.0})  # baseline
    cb.on_evaluate(
        None, state, control, metrics={"eval_general_loss": 2.04, "eval_domain_loss": 1.0}
    )  # +4% ppl
    assert not control.should_training_stop
    state.global_step = 30
    cb.on_evaluate(None, state, control, metrics={"eval_general_loss": 2.06})  # +6.2% ppl > 5% margin
    assert control.should_training_stop and cb.stopped_at == 30


def test_weight_averaging_with_parent(tmp_path):
    parent, trained = tmp_path / "parent", tmp_path / "trained"
    parent.mkdir()
    trained.mkdir()
    save_file({"w": torch.zeros(2, 2), "only_parent": torch.ones(1)}, str(parent / "model.safetensors"))
    save_file(
        {"w": torch.full((2, 2), 4.0), "b": torch.ones(3)},
        str(trained / "model.safetensors"),
        metadata={"format": "pt"},
    )
    assert average_with_parent(trained, parent, alpha=0.25) == 1
    out = load_file(str(trained / "model.safetensors"))
    assert torch.allclose(out["w"], torch.full((2, 2), 3.0))  # 0.75*4 + 0.25*0
    assert torch.equal(out["b"], torch.ones(3))  # tensors the parent lacks are kept
