"""How the CLI reaches data while `keel up` holds the database: the running platform's admin API."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from keel.config import KeelSettings


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


class AdminClient:
    def __init__(self, url: str, admin_key: str):
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=600)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(method, path, **kwargs)
        if r.status_code >= 400:
            try:
                message = r.json()["error"]["message"]
            except Exception:
                message = r.text[:300]
            raise RuntimeError(message)
        return r.json()
