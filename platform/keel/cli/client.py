"""The CLI's one way to the platform's data, whether or not `keel up` is running.

DuckDB allows one read-write process. While a platform runs it owns the database, so the CLI calls
its admin API over HTTP. When none runs, the CLI serves the *same* admin routers in-process over the
database file (``LocalPlatform``), so every command has one code path and one set of refusals.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import httpx

from keel.config import KeelSettings
from keel.errors import KeelError


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


class _NoWriter:
    """No platform runs, so no request-log writer holds unflushed rows."""

    def flush(self) -> None:
        pass


class LocalPlatform:
    """The parts of the platform that the admin routers use, over the database file."""

    def __init__(self, settings: KeelSettings):
        from keel.checkpoints.promotion import PromotionService
        from keel.store.db import Database
        from keel.store.keys import KeyStore
        from keel.store.permissions import secure_data_dir

        self.settings = settings
        secure_data_dir(settings.data_dir)  # the CLI creates the database when no platform has yet
        self.db = Database(settings.db_path)
        self.keys = KeyStore(self.db)
        self.promotions = PromotionService(self.db, None)  # no engines: promotion moves the registry only
        self.writer = _NoWriter()
        self.indexer = None
        self.admin_key = "sk-keel-local-" + secrets.token_urlsafe(16)

    def close(self) -> None:
        self.db.close()


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
        self._local: LocalPlatform | None = None
        if self.live:
            url, key = self.live
            self._http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
        else:
            from fastapi.testclient import TestClient

            from keel.app import create_admin_app

            self._local = LocalPlatform(settings)
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
