"""Budgeted training: a stage stops cleanly on its wall-clock or token budget and saves a complete checkpoint."""

from __future__ import annotations

import json

import pytest

from tests.training.conftest import TINY
from training.__main__ import run_stage
from training.checkpoint import is_checkpoint

pytestmark = pytest.mark.slow


def _run(stage, base_model_dir, tiny_data, out, **kw):
    return run_stage(
        stage,
        {
            **TINY,
            "model": str(base_model_dir),
            "dataset": str(tiny_data[stage]),
            "output_dir": str(out),
            "max_steps": 200,  # far more than the budget allows
            "learning_rate": 1e-4,
            "num_threads": 1,
            **kw,
        },
    )


def test_token_budget_stops_cpt_and_saves_a_complete_checkpoint(base_model_dir, tiny_data, tmp_path):
    # 2 sequences x 64 tokens per step: a 300-token budget stops after the 3rd step
    r = _run("cpt", base_model_dir, tiny_data, tmp_path / "cpt", max_train_tokens=300)
    m = json.loads((r.output / "manifest.json").read_text())
    assert is_checkpoint(r.output) and (r.output / "model.safetensors").exists()
    assert m["budget"]["stopped_by"] == "tokens"
    assert r.steps == 3 and m["steps"] == 3
    assert 300 <= m["budget"]["tokens"] <= 3 * 2 * 64
    assert not (tmp_path / ".cpt.work").exists()  # finished: no resumable debris left


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_wall_clock_budget_stops_the_stage_in_time(stage, base_model_dir, tiny_data, tmp_path):
    budget = 20.0
    r = _run(stage, base_model_dir, tiny_data, tmp_path / stage, max_wall_clock_s=budget, max_length=128)
    m = json.loads((r.output / "manifest.json").read_text())
    assert m["budget"]["stopped_by"] == "wall_clock"
    assert 1 <= r.steps < 200
    # stopped near the budget: the next step is predicted from the slowest recent one, so only a step far
    # slower than those before it (a busy shared CPU) ends past the budget
    assert m["budget"]["train_s"] <= budget * 1.5
    assert (r.output / "model.safetensors").exists() and (r.output / "tokenizer.json").exists()


def test_without_budget_nothing_stops_early(base_model_dir, tiny_data, tmp_path):
    r = _run("sft", base_model_dir, tiny_data, tmp_path / "sft", max_steps=2, max_length=128)
    m = json.loads((r.output / "manifest.json").read_text())
    assert r.steps == 2 and m["budget"]["stopped_by"] is None and m["budget"]["tokens"] > 0


def test_budget_clock_decays_the_lr_to_the_floor_when_the_budget_ends_the_run(
    base_model_dir, tiny_data, tmp_path
):
    """200 steps never run in 20 s: on the step clock the cosine is still near its peak when the budget stops
    the run; on the budget clock it reaches its floor as the budget runs out."""
    budget = 20.0
    kw = {"max_wall_clock_s": budget, "warmup_steps": 0.0, "lr_scheduler_type": "cosine"}
    runs = {}
    for clock in ("steps", "budget"):
        r = _run("cpt", base_model_dir, tiny_data, tmp_path / clock, lr_decay_clock=clock, **kw)
        m = json.loads((r.output / "manifest.json").read_text())
        assert m["budget"]["stopped_by"] == "wall_clock" and m["budget"]["lr_decay_clock"] == clock
        lrs = [
            json.loads(line)["learning_rate"]
            for line in (r.output / "metrics.jsonl").read_text().splitlines()
            if "learning_rate" in json.loads(line)
        ]
        runs[clock] = (r.steps, lrs)
    steps_clock, budget_clock = runs["steps"][1], runs["budget"][1]
    assert steps_clock[-1] > 0.8e-4  # 1e-4 peak, a few of 200 steps done
    assert budget_clock[-1] < 0.2e-4 and budget_clock[-1] < steps_clock[-1]
    assert all(a >= b for a, b in zip(budget_clock, budget_clock[1:], strict=False))  # decays monotonically
