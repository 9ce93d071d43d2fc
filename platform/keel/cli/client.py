"""The CLI's one way to the platform's data, whether or not `keel up` is running.

DuckDB allows one read-write process. While a platform runs it owns the database, so the CLI calls
its admin API over HTTP. When none runs, the CLI serves the *same* admin routers in-process over the
database file (``build_platform(settings, "offline")``), so every command has one code path and one set of
refusals.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from keel.config import KeelSettings
from keel.errors import KeelError

if TYPE_CHECKING:
    from keel.app import Platform


class PlatformRefused(KeelError):
    """The admin API answered with an error (its OpenAI-style message is the text)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def running_platform(settings: KeelSettings) -> tuple[str, str] | None:
    """(url, admin key) of a live platform for this data dir, or None."""
    info_path = settings.run_dir / "platform.json"
    key_path = settings.run_dir / "admin.key"
    if not info_path.exists() or not key_path.exists():
        return None
    try:
        info = json.loads(info_path.read_text())
        os.kill(int(info["pid"]), 0)
    except (ValueError, KeyError, ProcessLookupError, PermissionError, OSError):
        return None
    return info["url"], Path(key_path).read_text().strip()


def _raise_for(r: httpx.Response) -> Any:
    if r.status_code >= 400:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:300] or f"HTTP {r.status_code}"
        raise PlatformRefused(r.status_code, message)
    return r.json()


class PlatformClient:
    """``call(method, path, json=...)`` against the running platform, or in-process when none runs.

    ``live`` says which: a promotion without a platform only moves the registry, and the CLI says so.
    """

    def __init__(self, settings: KeelSettings):
        self.live = running_platform(settings)
        self._local: Platform | None = None
        if self.live:
            url, key = self.live
            self._http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
        else:
            from fastapi.testclient import TestClient

            from keel.app import build_platform, create_admin_app

            self._local = build_platform(settings, "offline")
            self._http = TestClient(
                create_admin_app(self._local),
                headers={"Authorization": f"Bearer {self._local.admin_key}"},
                raise_server_exceptions=True,  # a bug in a route keeps its traceback
            )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._local is not None:
            kwargs.pop("timeout", None)
        return _raise_for(self._http.request(method, path, **kwargs))

    def close(self) -> None:
        self._http.close()
        if self._local is not None:
            self._local.close()

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def call(settings: KeelSettings, method: str, path: str, **kwargs: Any) -> tuple[Any, bool]:
    """One admin call; returns (answer, whether a live platform answered)."""
    with PlatformClient(settings) as client:
        return client.call(method, path, **kwargs), bool(client.live)


class AdminClient:
    """HTTP only: for commands that need the running platform itself (e.g. `keel index` following it)."""

    def __init__(self, url: str, admin_key: str):
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=600)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return _raise_for(self.http.request(method, path, **kwargs))
