"""A real Trainer save cut short: `--resume` takes the save before it and finishes the run.

The run is killed after its second save; then that save is damaged file by file as a crash or a full disk
leaves it (trainer_state.json unreadable, the RNG state or the scheduler cut, the optimizer and the
weights cut short), each damage named; the resume falls back to the first save and reaches max_steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.training.test_process import REPO, _cmd, _env, _finished, _run
from training.checkpoint import trainer_state_problem
from training.stages.common import RunPaths

pytestmark = pytest.mark.slow


def test_resume_passes_over_a_truncated_save(base_model_dir, tiny_data, tmp_path):
    out = tmp_path / "sft"
    cmd = _cmd("sft", base_model_dir, tiny_data, out, max_steps=8, save_steps=2, learning_rate=1e-4)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    work = RunPaths.for_output(out).work
    second = work / "checkpoint-4"
    deadline = time.monotonic() + 600
    while (
        not (second / "trainer_state.json").exists() and proc.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (second / "trainer_state.json").exists(), "the second save never appeared"
    assert trainer_state_problem(work / "checkpoint-2") is None
    assert trainer_state_problem(second) is None  # whole as the Trainer left it
    assert RunPaths.for_output(out).last_state() == second

    def damaged(name: str, change) -> str:
        """``change`` the save's file ``name``; what the check says; the file's bytes put back."""
        f = second / name
        before = f.read_bytes()
        change(f)
        problem = trainer_state_problem(second)
        f.write_bytes(before)
        return problem or ""

    assert "trainer_state.json" in damaged(
        "trainer_state.json", lambda f: f.write_text('{"global_step": 4, "lo')
    )
    assert "rng_state.pth" in damaged("rng_state.pth", lambda f: os.truncate(f, f.stat().st_size // 2))
    assert "scheduler.pt" in damaged("scheduler.pt", lambda f: f.write_bytes(b""))
    assert trainer_state_problem(second) is None
    opt = second / "optimizer.pt"
    os.truncate(opt, opt.stat().st_size - 4096)  # too big to put back: this save stays broken from here
    assert "optimizer.pt" in trainer_state_problem(second)
    weights = second / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    assert "model.safetensors" in trainer_state_problem(second)
    assert RunPaths.for_output(out).last_state() == work / "checkpoint-2"

    r = _run([*cmd, "--resume"], timeout=900)
    m = _finished(r, out)
    assert m["resumed_from"] == "checkpoint-2" and m["steps"] == 8
    assert "checkpoint-4" in r.stderr and "incomplete" in r.stderr  # the passed-over save is named
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert steps[-1] == 8
