"""Checkpoint folders: written to a temporary path, renamed into place, `manifest.json` last.

A folder without a complete manifest is not a checkpoint (DESIGN.md). Training must not import
`keel`, so this mirrors keel.checkpoints.basemodel.write_manifest instead of importing it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.errors import TrainingError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class CheckpointError(TrainingError, RuntimeError):
    """A checkpoint problem worth one line."""


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json atomically (temp file + os.replace)."""
    tmp = folder / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def is_checkpoint(folder: Path) -> bool:
    return (Path(folder) / MANIFEST).exists()


def git_commit(cwd: Path | None = None) -> str | None:
    """The commit of the code that trained (None outside a git checkout)."""
    here = cwd or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def build_manifest(
    *,
    version: str,
    parent: str | None,
    stage: str,
    datasets: dict[str, str],
    config: dict[str, Any],
    steps: int,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "version": version,
        "parent": parent,
        "stage": stage,
        "datasets": datasets,
        "config": config,
        "steps": steps,
        "metrics": metrics,
        "git_commit": git_commit(),
        "created_at": datetime.now(UTC).isoformat(),
        **(extra or {}),
    }


def write_checkpoint(dest: Path, fill: Callable[[Path], None], manifest: dict[str, Any]) -> Path:
    """Create checkpoint ``dest``: ``fill(tmp)`` writes the files, the manifest goes last, then rename.

    A crash at any point leaves either nothing at ``dest`` or a complete checkpoint.
    """
    dest = Path(dest)
    if dest.exists():
        raise CheckpointError(f"checkpoint folder already exists: {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        fill(tmp)
        write_manifest(tmp, manifest)
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def clean_debris(parent_dir: Path) -> list[Path]:
    """Remove temp folders a killed writer left behind (``.<name>.tmp-*``)."""
    removed = []
    for p in Path(parent_dir).glob(".*.tmp-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed
