"""Test helpers around a real `keel up` process (started by bench/support/launcher.py) and its database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.support.launcher import PlatformProcess, free_port  # noqa: F401  (tests import them from here)


def process_group_alive(pgid: int) -> bool:
    """Whether any process of this process group is still there (an engine and its vLLM children)."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (zombies waiting for init to reap them do not count)."""
    ps = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True).stdout
    rows = [ln.split() for ln in ps.splitlines()]
    return [int(r[0]) for r in rows if int(r[1]) == pgid and not r[2].startswith("Z")]


def kill_platform(p: PlatformProcess, groups: list[int], what: str) -> None:
    """kill -9 of the platform; the process groups it led (engines, training) must go with it."""
    p.signal(signal.SIGKILL)
    p.wait(30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(group_members(pid) for pid in groups):
        time.sleep(0.5)
    assert not any(group_members(pid) for pid in groups), f"{what} outlived a killed platform"


def db_rows(db_path: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Read the database directly (only when no platform holds it)."""
    import duckdb

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def borrowed_engine(platform: PlatformProcess) -> str:
    """The override that makes another platform serve through `platform`'s engines (as external URLs):
    a platform of its own (own DuckDB, index, journal) without a vLLM start of its own (~1-2 min on CI)."""
    return "engine.external_urls=" + json.dumps(platform.engine_urls())


def load_json(value):
    return json.loads(value) if isinstance(value, str) else value


def routed_overrides(engine_platform: PlatformProcess, docs: Path, *extra: str) -> list[str]:
    """Overrides for a platform of its own that routes (router on) over the corpus at ``docs``, through
    ``engine_platform``'s engines (`borrowed_engine`)."""
    return [borrowed_engine(engine_platform), "router.enabled=true", f"rag.corpus_paths=[{docs}]", *extra]


def index_status(p: PlatformProcess, done, timeout: float = 600.0) -> dict:
    """The platform's /admin/index status once ``done(status)`` holds, or as it is at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        st = p.admin("GET", "/admin/index").json()
        if done(st) or time.monotonic() > deadline:
            return st
        time.sleep(0.5)


@contextlib.contextmanager
def platform_running(
    root: Path, model_dir: Path, overrides: list[str], timeout: float = 900.0
) -> Iterator[PlatformProcess]:
    """A `keel up` of its own with its data under `root/data` (kept as `p.root`), stopped afterwards."""
    p = PlatformProcess(data_dir=root / "data", model_dir=model_dir, overrides=overrides).start(
        timeout=timeout
    )
    p.root = root  # type: ignore[attr-defined]
    try:
        yield p
    finally:
        p.stop()


def engineless_platform(data_dir: Path, *overrides: str):
    """A real Platform (DuckDB, key store, registry) without engine, router or corpus: for tests of what the
    app's own code does (auth, pages, the admin API), where nothing needs a model."""
    from keel.app import build_platform
    from keel.config import load_settings

    settings = load_settings(
        overrides=[f"data_dir={data_dir}", "router.enabled=false", "rag.corpus_paths=[]", *overrides]
    )
    return build_platform(settings)


@contextlib.contextmanager
def serve_app(app, lifespan: str = "auto", timeout: float = 30.0) -> Iterator[int]:
    """Serve an ASGI app with uvicorn in a thread on a free loopback port (yielded) while the block runs;
    with the app's lifespan, its shutdown runs at the end (a Platform's closes its database)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


@contextlib.contextmanager
def serving(platform) -> Iterator[str]:
    """The real app over ``platform`` on a free loopback port (its URL yielded); the app's lifespan
    shutdown closes the platform (and its database) at the end."""
    from keel.app import create_app

    with serve_app(create_app(platform)) as port:
        yield f"http://127.0.0.1:{port}"
