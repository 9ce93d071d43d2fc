"""EngineProcess.stop reaches the whole process group, also after the API server itself has died.

vLLM's API server spawns EngineCore and Worker processes; when the API server is killed (a crash, kill -9),
those children live on as orphans in its process group. Here a shell stands in for the API server and a
`sleep` for its children: the logic under test is ours (signalling and waiting on the group), not vLLM's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from serving.config import EngineConfig
from serving.engine.process import EngineProcess, _die_with_parent
from tests.harness import process_group_alive


def _fake_engine(tmp_path) -> EngineProcess:
    ep = EngineProcess(tmp_path, "keel", 1, EngineConfig(), tmp_path / "e.log")
    # a leader whose child ignores nothing and outlives it, as EngineCore does
    ep.proc = subprocess.Popen(
        ["bash", "-c", "sleep 300 & echo $! > child.pid; wait"], cwd=tmp_path, preexec_fn=_die_with_parent
    )
    deadline = time.monotonic() + 10
    while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return ep


def test_stop_kills_children_orphaned_by_a_dead_leader(tmp_path):
    ep = _fake_engine(tmp_path)
    child = int((tmp_path / "child.pid").read_text())
    os.kill(ep.proc.pid, signal.SIGKILL)  # the API server dies; its child stays behind
    ep.proc.wait(10)
    assert process_group_alive(ep.proc.pid) and os.path.exists(f"/proc/{child}")
    ep.stop(grace=5)
    assert not process_group_alive(ep.proc.pid)
    assert not os.path.exists(f"/proc/{child}")


def test_stop_of_a_live_engine_takes_its_children_and_is_idempotent(tmp_path):
    ep = _fake_engine(tmp_path)
    child = int((tmp_path / "child.pid").read_text())
    ep.stop(grace=5)
    assert ep.proc.poll() is not None and not os.path.exists(f"/proc/{child}")
    ep.stop(grace=5)  # a second stop signals nothing (the group id may belong to someone else by now)
