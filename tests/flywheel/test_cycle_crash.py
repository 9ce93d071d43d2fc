"""kill -9 of the process running a cycle after training, while the evaluation child runs: the child dies
with it, the restarted process finds the cycle `interrupted` with one verified checkpoint serving, and
`keel cycle resume` finishes it without training again. (The kill during training is in
test_cycle_platform; the real parts are the same: DuckDB rows, a short real training run, real evals in
child processes, the gate, the offline promotion.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.flywheel.test_cycle_platform import REPO, _alive, _cli, _profile, env  # noqa: F401
from tests.harness import db_rows
from training.checkpoint import load_manifest

pytestmark = pytest.mark.slow


def _keel(env, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:  # noqa: F811 (the fixture)
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        env={**os.environ, "KEEL_CONFIG": str(env["config"]), "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _serving(db) -> list[tuple[str, str]]:
    return db_rows(db, "SELECT version, path FROM checkpoints WHERE status = 'serving'")


def test_kill_during_evaluate_then_resume(env):  # noqa: F811
    (env["root"] / "keel").mkdir(exist_ok=True)  # profiles are read from the data dir (or shipped)
    prof = _profile(env["root"] / "keel" / "p.yaml", env["data"], env["pass"])
    proc = _cli(env, "run", "--profile", str(prof), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    keel = env["root"] / "keel"
    deadline = time.monotonic() + 900
    pidfile = None
    while time.monotonic() < deadline and pidfile is None:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        pidfile = next(iter((keel / "cycles").glob("*/eval-*.pid")), None)
        time.sleep(0.2)
    assert pidfile is not None, "the evaluation never started"
    child = json.loads(pidfile.read_text())["pid"]
    proc.send_signal(signal.SIGKILL)  # the platform dies while the evaluation child runs
    proc.wait()
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.2)
    assert not _alive(child), "the evaluation child outlived its parent"

    db = keel / "keel.duckdb"
    ((cycle_id, status),) = db_rows(db, "SELECT cycle_id, status FROM cycles")
    assert status == "running"  # nobody recorded the crash yet
    assert [v for v, _ in _serving(db)] == ["base"]

    # the next process start records the crash: interrupted, the step that ran too
    shown = _keel(env, "cycle", "show", cycle_id, "--json")
    assert shown.returncode == 0, shown.stderr
    c = json.loads(shown.stdout)
    steps = {s["name"]: s for s in c["steps"]}
    assert c["status"] == "interrupted" and steps["evaluate"]["status"] == "interrupted", c
    assert steps["train:cpt"]["status"] == "done" and "gate" not in steps
    [(version, path)] = _serving(db)  # one checkpoint serves, and it is a complete one
    assert version == "base" and load_manifest(path).version_of(path) == "base"

    r = _keel(env, "cycle", "resume", cycle_id)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = {
        n: (s, a, json.loads(o) if o else {})
        for n, s, a, o in db_rows(
            db, "SELECT name, status, attempts, output FROM cycle_steps WHERE cycle_id = ?", [cycle_id]
        )
    }
    for name in ("mine", "snapshot:cpt", "train:cpt"):
        assert rows[name][1] == 1, (name, rows[name])  # done before the crash: not run again
    assert rows["evaluate"][:2] == ("done", 2)
    assert rows["gate"][:2] == ("done", 1) and rows["promote"][:2] == ("done", 1)
    ((status, outcome),) = db_rows(db, "SELECT status, outcome FROM cycles WHERE cycle_id = ?", [cycle_id])
    assert (status, outcome) == ("succeeded", "promoted")
    candidate = rows["train:cpt"][2]["version"]
    [(version, path)] = _serving(db)
    assert version == candidate and load_manifest(path).version_of(path) == candidate
    assert not list((keel / "cycles" / cycle_id).glob("*.pid"))  # no child left behind
