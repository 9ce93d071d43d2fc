"""The cycle's child processes: own process group at lower priority with a thread count; cancel kills the
whole group (grandchildren too); a failure ends with the child's one-line error; a pid file left by a
dead platform lets the next one end the orphan; the deepspeed and template launchers build their argv."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest
from keel.cycle.launcher import ChildFailed, build_command, end_orphan, run_child

from flywheel.cycle import Cancelled
from flywheel.cycle_config import LauncherConfig

CHILD = """
import os, subprocess, sys, time, json
kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
try:
    group = open("/proc/self/autogroup").read().split()
except OSError:
    group = None
print(json.dumps({"pid": os.getpid(), "kid": kid.pid, "nice": os.nice(0), "pgid": os.getpgid(0),
                  "threads": os.environ.get("OMP_NUM_THREADS"), "autogroup": group}), flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_cancel_kills_the_child_group_and_it_ran_niced_with_its_threads(tmp_path):
    cfg = LauncherConfig(nice=7, threads=1)
    cancel = threading.Event()
    log = tmp_path / "child.log"
    errors: list[BaseException] = []

    def run():
        try:
            run_child([sys.executable, "-c", CHILD], cfg, log, cancel, cwd=tmp_path)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    info = None
    for _ in range(100):
        lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")] if log.exists() else []
        if lines:
            info = json.loads(lines[0])
            break
        time.sleep(0.1)
    assert info is not None
    assert info["pgid"] == info["pid"] != os.getpgid(0)  # its own process group
    assert info["nice"] >= os.nice(0) + 7 and info["threads"] == "1"
    if info["autogroup"]:  # Linux autogroup scheduling: the child's new session must be niced as well,
        # or the process's nice value counts only inside that session and training shares the CPU
        # equally with serving
        assert info["autogroup"][-2:] == ["nice", "7"], info["autogroup"]
    assert (tmp_path / "child.pid").exists()
    cancel.set()
    t.join(30)
    assert errors and isinstance(errors[0], Cancelled)
    for _ in range(50):
        if not (_alive(info["pid"]) or _alive(info["kid"])):
            break
        time.sleep(0.1)
    assert not _alive(info["pid"]) and not _alive(info["kid"]), "a process of the group survived cancel"
    assert not (tmp_path / "child.pid").exists()


def test_failure_carries_the_childs_error_line(tmp_path):
    code = "import sys; print('progress...'); print('error: dataset is empty', file=sys.stderr); sys.exit(2)"
    with pytest.raises(ChildFailed, match="exited 2: error: dataset is empty"):
        run_child([sys.executable, "-c", code], LauncherConfig(), tmp_path / "x.log", threading.Event())


def test_an_orphan_left_by_a_dead_platform_is_ended(tmp_path):
    import subprocess

    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    pidfile = tmp_path / "train-cpt.pid"
    pidfile.write_text(json.dumps({"pid": orphan.pid}))
    assert end_orphan(pidfile) is True
    orphan.wait(10)
    assert orphan.returncode is not None and not pidfile.exists()
    assert end_orphan(pidfile) is False  # nothing left


def test_launchers_build_their_commands():
    args = ["cpt", "--config", "r.yaml"]
    assert build_command(LauncherConfig(), "training", args, True)[1:] == ["-m", "training", *args]
    ds = build_command(
        LauncherConfig(kind="deepspeed", hostfile="/etc/hosts.ds", deepspeed_args=["--num_gpus", "8"]),
        "training",
        args,
        True,
    )
    assert ds == [
        "deepspeed",
        "--hostfile",
        "/etc/hosts.ds",
        "--num_gpus",
        "8",
        "--module",
        "training",
        *args,
    ]
    tpl = LauncherConfig(kind="command", template="srun -N2 {python} -m {module} {args}")
    cmd = build_command(tpl, "training", args, True)
    assert cmd[:2] == ["srun", "-N2"] and cmd[-5:] == ["-m", "training", *args]
    # evaluation always runs locally, whatever launches training
    assert build_command(tpl, "training.eval", ["run", "x"], False)[1:3] == ["-m", "training.eval"]
    with pytest.raises(Exception, match="template is empty"):
        build_command(LauncherConfig(kind="command"), "training", args, True)
