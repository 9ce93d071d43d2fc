"""Runs in child processes, as production does: DeepSpeed ZeRO-2 (gloo, CPU) and kill mid-run + --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.conftest import TINY

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _cmd(stage: str, model: Path, data: dict, out: Path, **over) -> list[str]:
    """``python -m training STAGE`` on the tiny data of that stage, from ``model`` into ``out``."""
    over = {**TINY, "model": model, "dataset": data[stage], "output_dir": out, **over}
    args = [f"{k}={json.dumps(v) if isinstance(v, list | bool) else v}" for k, v in over.items()]
    return [sys.executable, "-m", "training", stage, "--config", os.devnull, *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _run(cmd: list[str], timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """Run a training command as the launcher does; a failure shows the end of its stderr."""
    return subprocess.run(
        cmd, env={**_env(), **env}, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def _finished(proc: subprocess.CompletedProcess, out: Path) -> dict:
    """The manifest of a run that succeeded and wrote it."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "manifest.json").read_text())


def test_deepspeed_zero2_on_cpu(base_model_dir, tiny_data, tmp_path):
    out = tmp_path / "cpt-ds"
    cmd = _cmd("cpt", base_model_dir, tiny_data, out, max_steps=3, learning_rate=1e-4, deepspeed_stage=2)
    m = _finished(_run(cmd), out)
    assert m["deepspeed"] is True and m["config"]["deepspeed_stage"] == 2 and m["steps"] == 3
    assert m["metrics"]["loss"] < m["metrics"]["first_loss"]


def test_kill_mid_run_then_resume(base_model_dir, tiny_data, tmp_path):
    out = tmp_path / "sft"
    cmd = _cmd("sft", base_model_dir, tiny_data, out, max_steps=5, save_steps=2, learning_rate=1e-4)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    state = tmp_path / ".sft.work" / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.exists(), "no resumable state was saved"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # no half checkpoint

    # without --resume the unfinished run is protected
    again = _run(cmd, timeout=120)
    assert again.returncode == 2 and "--resume" in again.stderr
    m = _finished(_run([*cmd, "--resume"]), out)
    assert m["steps"] == 5 and m["resumed_from"] in ("checkpoint-2", "checkpoint-4")
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert steps[0] == 1 and steps[-1] == 5  # the log spans both processes


def test_shipped_multi_gpu_launch_runs_here(base_model_dir, tiny_data, tmp_path):
    """deploy/deepspeed/train-multi-gpu.sh as a user runs it, through the real `deepspeed` launcher
    (one CPU rank, gloo)."""
    out = tmp_path / "out"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {base_model_dir}\ndataset: {tiny_data['sft']}\noutput_dir: {out}\n"
        "max_steps: 2\nmax_length: 64\nlogging_steps: 1\nreport: false\n"
    )
    script = REPO / "deploy" / "deepspeed" / "train-multi-gpu.sh"
    m = _finished(_run(["bash", str(script), "sft", str(recipe)], NUM_GPUS="1", BF16="false", ZERO="2"), out)
    assert m["deepspeed"] is True and m["config"]["deepspeed_stage"] == 2 and m["steps"] == 2


def test_multi_node_launch_checks_its_hostfile(tmp_path):
    """The multi-node script needs passwordless SSH to every host (none here): check what can be checked
    without it, that it parses and that a missing hostfile is a one-line error."""
    script = REPO / "deploy" / "deepspeed" / "train-multi-node.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    proc = _run(["bash", str(script), "sft", "recipe.yaml"], HOSTFILE=str(tmp_path / "missing"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "hostfile" in proc.stderr
