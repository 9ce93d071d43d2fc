"""The CLI fails with one line, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from bench.support.launcher import free_port

# a port of its own: a platform already serving on the default port must not turn these into a port error
UP = ("up", "--port", str(free_port()))


def keel(*args: str, env_extra: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "keel", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_is_fast():
    t0 = time.perf_counter()
    proc = keel("--help")
    assert proc.returncode == 0 and "up" in proc.stdout
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, keel.cli; keel.cli._register(); print('torch' in sys.modules, 'vllm' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == "False False"
    assert time.perf_counter() - t0 < 60


def test_missing_model_folder(tmp_path):
    err = one_line_error(
        keel(*UP, env_extra={"KEEL_DATA_DIR": str(tmp_path), "KEEL_MODEL__PATH": str(tmp_path / "nope")})
    )
    assert "model folder not found" in err


def test_model_folder_without_config(tmp_path):
    (tmp_path / "m").mkdir()
    err = one_line_error(
        keel(*UP, env_extra={"KEEL_DATA_DIR": str(tmp_path), "KEEL_MODEL__PATH": str(tmp_path / "m")})
    )
    assert "config.json" in err


def test_gateway_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        err = one_line_error(keel("up", "--port", str(port), env_extra={"KEEL_DATA_DIR": str(tmp_path)}))
    assert f"port {port} is already in use" in err


def test_bad_config_override(tmp_path):
    err = one_line_error(
        keel("--set", "gateway.port=abc", "keys", "list", env_extra={"KEEL_DATA_DIR": str(tmp_path)})
    )
    assert "invalid configuration" in err


def test_revoke_unknown_key(tmp_path):
    err = one_line_error(keel("keys", "revoke", "nobody", env_extra={"KEEL_DATA_DIR": str(tmp_path)}))
    assert "no key" in err


@pytest.mark.slow
def test_engine_port_in_use_names_the_cause(tmp_path, base_model_dir):
    from serving.config import EngineConfig
    from serving.engine.process import EngineProcess, EngineStartError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = EngineProcess(base_model_dir, "keel", port, EngineConfig(), tmp_path / "e.log")
        with pytest.raises(EngineStartError, match=f"port {port} is already in use"):
            proc.start()


def test_diagnose_names_out_of_memory():
    from serving.engine.process import diagnose

    tail = "INFO loading\nRuntimeError: [enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes. Error code 12 (Cannot allocate memory)\n"
    assert "out of memory" in diagnose(tail, 8100, "/m")
    assert "already in use" in diagnose("OSError: [Errno 98] Address already in use", 8100, "/m")
    assert diagnose(
        "ValueError: something odd\nFor further information visit https://errors.pydantic.dev/x", 1, "/m"
    ).startswith("engine exited: ValueError: something odd")


BOOM = """
import sys
import keel.cli as cli
from keel.errors import KeelError

@cli.app.command("boom")
def boom(kind: str) -> None:
    if kind == "user":
        raise KeelError("the user can act on this\\nsecond line")
    raise ZeroDivisionError("a bug")

sys.argv = ["keel", "boom", sys.argv[1]]
cli.main()
"""


def test_user_errors_are_one_line_and_bugs_keep_their_traceback():
    run = [sys.executable, "-c", BOOM]
    user = subprocess.run([*run, "user"], capture_output=True, text=True, timeout=120)
    assert user.returncode == 1 and one_line_error(user) == "error: the user can act on this"
    bug = subprocess.run([*run, "bug"], capture_output=True, text=True, timeout=120)
    assert bug.returncode != 0 and "Traceback" in bug.stderr and "ZeroDivisionError: a bug" in bug.stderr


def test_a_broken_command_module_is_not_silently_dropped():
    """A command module that fails to import must fail `keel`, not make its commands vanish."""
    code = "import sys; sys.modules['keel.cli.eval'] = None; import keel.cli as cli; cli._register()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "keel.cli.eval" in proc.stderr
