"""Which saved trainer state `--resume` takes: each file's own framing (a safetensors header's data length,
a torch zip's directory) says whether a save was cut short. Real formats on tiny tensors here; a real
Trainer save cut short is in test_resume_truncated.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from training.checkpoint import last_complete_state, trainer_state_problem


def _state(folder: Path, step: int, weights: str = "model.safetensors") -> Path:
    """A save laid out as the Trainer writes it (weights, optimizer, scheduler, RNG, state last)."""
    folder.mkdir(parents=True)
    save_file({"w": torch.arange(64, dtype=torch.float32)}, folder / weights)
    torch.save({"state": {0: torch.ones(64)}}, folder / "optimizer.pt")
    torch.save({"last_epoch": step}, folder / "scheduler.pt")
    torch.save({"python": 1}, folder / "rng_state.pth")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def _cut(path: Path, keep: float = 0.5) -> None:
    os.truncate(path, int(path.stat().st_size * keep))


def test_a_whole_save_is_resumable(tmp_path):
    assert trainer_state_problem(_state(tmp_path / "checkpoint-2", 2)) is None
    assert trainer_state_problem(_state(tmp_path / "checkpoint-4", 4, "adapter_model.safetensors")) is None
    assert last_complete_state(tmp_path) == tmp_path / "checkpoint-4"


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda d: _cut(d / "model.safetensors"), "model.safetensors"),
        (lambda d: (d / "model.safetensors").write_bytes(b""), "model.safetensors is 0 bytes"),
        # delayed allocation after a crash: the size is right, the bytes are zeros
        (
            lambda d: (d / "model.safetensors").write_bytes(bytes((d / "model.safetensors").stat().st_size)),
            "header",
        ),
        (lambda d: (d / "model.safetensors").unlink(), "no weights"),
        (lambda d: _cut(d / "optimizer.pt", 0.9), "optimizer.pt"),
        (lambda d: (d / "optimizer.pt").unlink(), "optimizer.pt is missing"),
        (lambda d: (d / "scheduler.pt").write_bytes(b""), "scheduler.pt"),
        (lambda d: _cut(d / "rng_state.pth"), "rng_state.pth"),
        (lambda d: (d / "trainer_state.json").write_text('{"global_st'), "trainer_state.json"),
        (lambda d: (d / "trainer_state.json").unlink(), "no trainer_state.json"),
    ],
)
def test_a_save_cut_short_falls_back_to_the_one_before(tmp_path, damage, named, caplog):
    _state(tmp_path / "checkpoint-2", 2)
    newest = _state(tmp_path / "checkpoint-10", 10)  # numeric order, not name order
    damage(newest)
    problem = trainer_state_problem(newest)
    assert problem is not None and named in problem, problem
    assert last_complete_state(tmp_path) == tmp_path / "checkpoint-2"


def test_a_sharded_save_needs_every_shard(tmp_path):
    d = _state(tmp_path / "checkpoint-3", 3)
    (d / "model.safetensors").rename(d / "model-00001-of-00002.safetensors")
    save_file({"v": torch.zeros(8)}, d / "model-00002-of-00002.safetensors")
    index = {"weight_map": {"w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors"}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    assert trainer_state_problem(d) is None
    (d / "model-00002-of-00002.safetensors").unlink()
    assert "model-00002-of-00002.safetensors is missing" in trainer_state_problem(d)
    assert last_complete_state(tmp_path) is None


def test_a_deepspeed_save_needs_its_tagged_states(tmp_path):
    d = tmp_path / "checkpoint-5"
    d.mkdir()
    (d / "trainer_state.json").write_text(json.dumps({"global_step": 5}))
    (d / "latest").write_text("global_step5")
    assert "global_step5" in trainer_state_problem(d)
    (d / "global_step5").mkdir()
    torch.save({"optimizer": 1}, d / "global_step5" / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    assert trainer_state_problem(d) is None
    _cut(d / "global_step5" / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    assert "optim_states.pt" in trainer_state_problem(d)
