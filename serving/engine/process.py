"""One vLLM OpenAI server as a supervised subprocess on a loopback port."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from serving.config import EngineConfig
from serving.errors import ServingError

# Seconds a managed engine keeps an idle connection from the gateway (vLLM's default is 5 s).
ENGINE_KEEP_ALIVE_S = 75


class EngineStartError(ServingError, RuntimeError):
    """An engine that did not become healthy; the message is one line naming the cause."""


def _is_cuda_host() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def find_free_port(host: str, start: int, taken: set[int] | None = None) -> int:
    """A free port: from the OS when ``start`` is 0 (no two platforms race for the same one), else scanning up."""
    if start == 0:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if port not in (taken or set()):
                return port
    port = start
    while port < start + 1000:
        if port not in (taken or set()) and port_is_free(host, port):
            return port
        port += 1
    raise EngineStartError(f"no free port in {start}..{start + 999}")


def listener_pid(port: int) -> int | None:
    """The pid listening on a TCP port (Linux /proc via psutil), or None."""
    import psutil

    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
                return c.pid
    except (psutil.AccessDenied, OSError):
        return None
    return None


def owns_port(pid: int, port: int) -> bool:
    """True when `port` is served by `pid` or one of its children: /health from a stranger must not count."""
    import psutil

    owner = listener_pid(port)
    if owner is None:
        return True  # cannot tell (no permission): fall back to trusting /health
    if owner == pid:
        return True
    try:
        return owner in {c.pid for c in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return False


def _die_with_parent() -> None:
    # The engine must not outlive the platform, even after kill -9 of the platform.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    os.setsid()  # own process group, so stop() can reach vLLM's workers too


_CAUSES = [
    ("address already in use", "port {port} is already in use"),
    ("errno 98", "port {port} is already in use"),
    ("out of memory", "out of memory while loading the model (lower engine.kvcache_gib or max_model_len)"),
    (
        "cannot allocate memory",
        "out of memory while loading the model (lower engine.kvcache_gib or max_model_len)",
    ),
    ("insufficient memory", "out of memory (lower engine.kvcache_gib or max_model_len)"),
    ("no available memory for the cache", "out of memory for the KV cache (raise engine.kvcache_gib)"),
    ("does not appear to have a file named config.json", "model folder {model} has no config.json"),
    ("is not a local folder", "model folder not found: {model}"),
    ("repo id must be", "model folder not found: {model}"),
    ("no such file or directory", "model folder not found or incomplete: {model}"),
]


def diagnose(log_tail: str, port: int, model: str) -> str:
    """Name the cause of a failed start from vLLM's output."""
    low = log_tail.lower()
    for needle, message in _CAUSES:
        if needle in low:
            return message.format(port=port, model=model)
    lines = [ln.strip() for ln in log_tail.splitlines() if ln.strip()]
    # vLLM prints the cause on a "Value error, ..." / "XxxError: ..." line, followed by help links.
    errors = [
        ln
        for ln in lines
        if ("error" in ln.lower()) and "errors.pydantic.dev" not in ln and "warning" not in ln.lower()
    ]
    last = (errors or lines or ["no output"])[-1]
    return f"engine exited: {last[:300]}"


def _wait_group_gone(proc: subprocess.Popen, timeout: float) -> bool:
    """Reap the leader and wait until no process of its group is left; False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return proc.poll() is not None
        if time.monotonic() > deadline:
            return False


@dataclass(eq=False)
class EngineProcess:
    """A managed vLLM server. ``start`` returns once /health answers or raises EngineStartError."""

    model_dir: Path
    served_name: str
    port: int
    config: EngineConfig
    log_path: Path
    version: str = ""
    cpu_bind: str | None = (
        None  # VLLM_CPU_OMP_THREADS_BIND for this engine (CPU hosts), chosen by the supervisor
    )
    proc: subprocess.Popen | None = None
    _log_file: object | None = field(default=None, repr=False)
    _group_gone: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def command(self) -> list[str]:
        c = self.config
        cmd = [
            c.python or sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_name,
            "--host",
            c.host,
            "--port",
            str(self.port),
            "--dtype",
            c.dtype,
            "--max-model-len",
            str(c.max_model_len),
            "--disable-uvicorn-access-log",
        ]
        if c.enforce_eager:
            cmd.append("--enforce-eager")
        if _is_cuda_host():
            cmd += ["--gpu-memory-utilization", str(c.gpu_memory_utilization)]
        return cmd + list(c.extra_args)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.config.kvcache_gib))
        # Needed for in-place weight reload (pause / collective_rpc / resume); safe because engines bind loopback.
        env.setdefault("VLLM_SERVER_DEV_MODE", "1")
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        # The gateway's pool drops idle engine connections after 3 s; against vLLM's own 5 s a stall of the
        # busy 2-core host could still let the engine close one under a request going out on it.
        env.setdefault("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", str(ENGINE_KEEP_ALIVE_S))
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        if self.cpu_bind is not None and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            env["VLLM_CPU_OMP_THREADS_BIND"] = self.cpu_bind
        env.update(self.config.extra_env)
        return env

    def launch(self) -> None:
        if not self.model_dir.is_dir():
            raise EngineStartError(f"model folder not found: {self.model_dir}")
        if not (self.model_dir / "config.json").exists():
            raise EngineStartError(f"model folder {self.model_dir} has no config.json")
        if not port_is_free(self.config.host, self.port):
            raise EngineStartError(f"port {self.port} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._group_gone = False
        self.proc = subprocess.Popen(
            self.command(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env(),
            preexec_fn=_die_with_parent,
        )

    def log_tail(self, n: int = 60) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return "".join(deque((ln.decode("utf-8", "replace") for ln in f), maxlen=n))
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise EngineStartError(diagnose(self.log_tail(), self.port, str(self.model_dir)))
                try:
                    if client.get(f"{self.url}/health").status_code == 200 and owns_port(
                        self.proc.pid, self.port
                    ):
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
        self.stop()
        raise EngineStartError(
            f"engine on port {self.port} not healthy after {timeout:.0f} s (see {self.log_path})"
        )

    def start(self) -> None:
        self.launch()
        self.wait_healthy(self.config.startup_timeout_s)

    def stop(self, grace: float = 20.0) -> None:
        proc = self.proc
        if proc is None or self._group_gone:
            return  # never signal a group id twice: once it is gone the number may be reused
        # Signal the whole process group even when the API server has already exited: after a crash (or a
        # kill -9 of the API server) its EngineCore and Worker children live on as orphans in that group,
        # holding the KV cache and a core each, and PDEATHSIG only fires for the API server itself.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        gone = _wait_group_gone(proc, grace)
        if not gone:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            # a process stuck in the kernel: the kernel reaps it; never block a swap on it
            gone = _wait_group_gone(proc, 30)
        self._group_gone = gone
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
