"""Child processes for the cycle's heavy steps: own process group, lower CPU priority, a thread count.

    local       python -m <module> <args>                                  (default)
    deepspeed   deepspeed [--hostfile H] [args] --module <module> <args>   (GPUs, several nodes)
    command     any template with {python}, {module}, {args}, e.g. a blocking cluster submission

The child gets its own session (``start_new_session``), so cancel kills the whole group (the deepspeed
launcher's ranks too), and a pid file beside its log, so a restarted platform can end an orphaned group
before it resumes the step. On Linux the child also dies with the platform (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from flywheel.cycle import Cancelled
from flywheel.cycle_config import LauncherConfig
from keel.errors import KeelError

REPO = Path(__file__).resolve().parents[3]  # the checkout (python -m training must import it)


class ChildFailed(KeelError):
    """A child process exited non-zero; the message ends with its last log lines."""


@dataclass
class ChildResult:
    returncode: int
    log: Path
    seconds: float
    last_line: str


def _autogroup_nice(nice: int) -> None:
    """Lower the child's session's scheduling group too, not only the process.

    With autogroup scheduling (Linux's default on desktops and many servers) CPU time is shared between
    sessions first, and a process's nice value only counts inside its own session. The child starts a
    new session (so cancel can kill its group), which would give training an equal share with serving
    whatever its nice value; setting the group's nice restores the priority the launcher promises.
    """
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(str(nice))


def _pdeathsig() -> None:
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def build_command(cfg: LauncherConfig, module: str, args: list[str], distributed: bool) -> list[str]:
    """The argv for ``module`` (training runs through the configured launcher; eval always locally)."""
    if not distributed or cfg.kind == "local":
        return [sys.executable, "-m", module, *args]
    if cfg.kind == "deepspeed":
        hosts = ["--hostfile", cfg.hostfile] if cfg.hostfile else []
        return ["deepspeed", *hosts, *cfg.deepspeed_args, "--module", module, *args]
    if not cfg.template:
        raise KeelError("cycle.launcher.kind is 'command' but cycle.launcher.template is empty")
    line = cfg.template.format(
        python=shlex.quote(sys.executable), module=module, args=" ".join(shlex.quote(a) for a in args)
    )
    return shlex.split(line)


def child_env(cfg: LauncherConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if cfg.threads > 0:
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[k] = str(cfg.threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def kill_group(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left after ``grace_s``."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def end_orphan(pidfile: Path) -> bool:
    """A pid file left by a platform that died: end that child's group (if it still runs). True if one ran."""
    if not pidfile.exists():
        return False
    try:
        pid = int(json.loads(pidfile.read_text())["pid"])
    except (ValueError, KeyError, OSError):
        pidfile.unlink(missing_ok=True)
        return False
    alive = True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        alive = False
    except PermissionError:
        alive = False
    if alive:
        kill_group(pid)
    pidfile.unlink(missing_ok=True)
    return alive


def run_child(
    argv: list[str],
    cfg: LauncherConfig,
    log: Path,
    cancel: threading.Event,
    cwd: Path = REPO,
) -> ChildResult:
    """Run ``argv`` to its end (or until ``cancel`` is set: then its group is killed and Cancelled raised)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile = log.with_suffix(".pid")
    end_orphan(pidfile)
    nice = cfg.nice

    def pre() -> None:
        _pdeathsig()
        if nice:
            os.nice(nice)
            _autogroup_nice(nice)

    t0 = time.monotonic()
    with log.open("ab") as out:
        out.write(f"\n$ {shlex.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            cwd=str(cwd),
            env=child_env(cfg),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pre,  # noqa: PLW1509 - a plain fork/exec; no threads touch state in between
        )
        pidfile.write_text(json.dumps({"pid": proc.pid, "argv": argv}))
        try:
            while proc.poll() is None:
                if cancel.wait(0.5):
                    kill_group(proc.pid)
                    proc.wait()
                    raise Cancelled("cancelled: the child process group was killed")
        except BaseException:
            if proc.poll() is None:
                kill_group(proc.pid)
                proc.wait()
            raise
        finally:
            pidfile.unlink(missing_ok=True)
    seconds = time.monotonic() - t0
    tail = _tail(log)
    if proc.returncode != 0:
        raise ChildFailed(f"{argv[2] if len(argv) > 2 else argv[0]} exited {proc.returncode}: {tail}")
    return ChildResult(proc.returncode, log, seconds, tail)


def _tail(log: Path, n: int = 2000) -> str:
    """The child's last meaningful line (its one-line error, or its JSON result)."""
    with log.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - n))
        lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("error:", "{")):
            return ln
    return lines[-1] if lines else ""
