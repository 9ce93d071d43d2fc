"""Checkpoint registry (minimal core: which version serves; the full registry extends this)."""

from __future__ import annotations

import json
from pathlib import Path

from keel.db import Database


def register(db: Database, version: str, path: Path, manifest: dict, status: str = "candidate") -> None:
    db.execute(
        "INSERT INTO checkpoints (version, path, parent, stage, status, manifest) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (version) DO NOTHING",
        [
            version,
            str(path),
            manifest.get("parent"),
            manifest.get("stage"),
            status,
            json.dumps(manifest, default=str),
        ],
    )


def serving(db: Database) -> tuple[str, Path] | None:
    rows = db.fetchall(
        "SELECT version, path FROM checkpoints WHERE status = 'serving' ORDER BY created_at DESC LIMIT 1"
    )
    return (rows[0][0], Path(rows[0][1])) if rows else None


def ensure_base_registered(db: Database, base_dir: Path) -> None:
    """`base` is the first serving version when nothing else has been promoted."""
    manifest_path = base_dir / "manifest.json"
    manifest = (
        json.loads(manifest_path.read_text())
        if manifest_path.exists()
        else {"version": "base", "stage": "base"}
    )
    has_serving = serving(db) is not None
    register(db, "base", base_dir, manifest, status="candidate" if has_serving else "serving")
