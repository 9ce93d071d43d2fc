"""Start a real `keel up` as a child process and talk to it: benchmarks, tests and scripts share this.

The platform is the process the product runs (`python -m keel up`), on a free loopback port and its own
data dir; this class only starts it, waits for /health, and wraps the CLI and the admin API.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

DEMO_DOCS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "domain" / "tidb-docs-zh" / "docs"
)


def copy_index(index_from: Path, data_dir: Path) -> list[str]:
    """Serve a complete rag folder (another platform's <data_dir>/rag, built from the demo corpus, e.g. kept
    by bench/time_to_dense.py --keep) from `data_dir`: the overrides that name the corpus it was built
    from, so the start-up scan finds nothing changed and embeds nothing."""
    shutil.copytree(index_from, data_dir / "rag")
    return [f"rag.corpus_paths=[{DEMO_DOCS}]"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PlatformProcess:
    data_dir: Path
    model_dir: Path
    overrides: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KEEL_DATA_DIR"] = str(self.data_dir)
        env["KEEL_MODEL__PATH"] = str(self.model_dir)
        env.pop("KEEL_CONFIG", None)
        # `keel up` would index the demo corpus (~35 min of embedding); tests that want auto-indexing
        # pass rag.corpus_paths=[...] in overrides (which win over the environment)
        env.setdefault("KEEL_RAG__CORPUS_PATHS", "[]")
        return env

    def cli_argv(self) -> list[str]:
        return [sys.executable, "-m", "keel", *[a for o in self.overrides for a in ("--set", o)]]

    def cli(self, *args: str, check: bool = True, timeout: float = 1500) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(
                [*self.cli_argv(), *args], env=self.env(), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"keel {' '.join(args)} did not finish in {timeout:.0f} s\n{self.log_tail()}"
            ) from e
        if check and proc.returncode != 0:
            raise AssertionError(
                f"keel {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}\n{self.log_tail()}"
            )
        return proc

    def log_tail(self, lines: int = 40) -> str:
        """The platform's own log, for failure messages (CI shows nothing else of it)."""
        if self.log_path is None or not self.log_path.exists():
            return "(no platform log)"
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "platform log (last lines):\n" + "\n".join(tail)

    def start(self, timeout: float = 600, ready: Callable[[], bool] | None = None) -> PlatformProcess:
        """Start ``keel up`` and wait until ``ready()`` (default: /health answers 200) holds."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"platform-{self.port}.log"
        sets = [a for o in self.overrides for a in ("--set", o)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "keel", *sets, "up", "--port", str(self.port)],
            env=self.env(),
            stdout=open(self.log_path, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        ready = ready or (lambda: httpx.get(f"{self.url}/health", timeout=2).status_code == 200)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"keel up exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}"
                )
            try:
                if ready():
                    return self
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"platform not ready after {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def wait_dense(self, timeout: float = 600) -> dict:
        """Until the index is loaded and every chunk has its vector; refuses an index that is not complete."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.admin("GET", "/admin/index").json()
            if s["state"] == "idle" and not s["dense_pending"] and s["chunks_total"]:
                if s["chunks_embedded"] < s["chunks_total"]:
                    raise RuntimeError(f"index incomplete: {s['chunks_embedded']}/{s['chunks_total']}")
                return s
            if time.monotonic() > deadline:
                raise RuntimeError(f"index not ready after {timeout:.0f} s: {s}")
            time.sleep(2)

    def create_key(self, name: str, role: str = "user") -> str:
        return self.cli("keys", "create", "--name", name, "--role", role).stdout.strip()

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "run" / "admin.key").read_text().strip()

    def admin(self, method: str, path: str, timeout: float = 60, **kw) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.url}{path}",
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=timeout,
            **kw,
        )

    def rows(self, ids: list[str], timeout: float = 10.0) -> list[dict]:
        """Request-log rows for these ids, waiting for the batch writer to commit them."""
        deadline = time.monotonic() + timeout
        want = list(dict.fromkeys(ids))
        while True:
            got: dict[str, dict] = {}
            for k in range(0, len(want), 200):  # bounded URLs; the listing's own limit is 50 by default
                params = [("id", i) for i in want[k : k + 200]] + [("limit", "1000")]
                r = self.admin("GET", "/admin/requests", params=params)
                r.raise_for_status()
                got |= {row["request_id"]: row for row in r.json()}
            if len(got) >= len(want) or time.monotonic() > deadline:
                return list(got.values())
            time.sleep(0.1)

    def engine_urls(self) -> list[str]:
        return [e["url"] for e in httpx.get(f"{self.url}/health", timeout=5).json()["engines"]]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 120) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
