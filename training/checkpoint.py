"""Checkpoint folders and their manifest: the one owner of ``manifest.json``.

A checkpoint is written to a temporary path and renamed into place, ``manifest.json`` last; a folder
without a complete manifest is not a checkpoint (DESIGN.md). Training, evaluation, the registry and the
base model all read and write manifests through ``Manifest`` here, so lineage has one format.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from training.errors import TrainingError
from training.files import atomic_folder, write_text_atomic

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class CheckpointError(TrainingError, RuntimeError):
    """A checkpoint problem worth one line."""


class Manifest(BaseModel):
    """What made a checkpoint: its lineage (parent, datasets by content hash, config) and what later steps
    learnt about it (``eval`` links, registry status, fingerprints).

    Later steps add sections of their own; they are kept (``extra="allow"``) and written back unchanged.
    """

    model_config = ConfigDict(extra="allow")

    manifest_version: int = MANIFEST_VERSION
    version: str | None = Field(None, description="Version name (None: the folder name).")
    parent: str | None = Field(None, description="The parent checkpoint's version (or path).")
    stage: str | None = Field(None, description="base | cpt | sft | dpo | ...")
    datasets: dict[str, str] = Field(default_factory=dict, description="Dataset kind → content hash.")
    config: dict[str, Any] = Field(default_factory=dict, description="The resolved recipe.")
    steps: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    git_commit: str | None = None
    created_at: str | None = None
    eval: dict[str, Any] | None = Field(None, description="Eval runs and the gate decision (training/eval).")

    def version_of(self, folder: Path) -> str:
        return self.version or Path(folder).name

    def dump(self) -> dict[str, Any]:
        """The JSON form (what the file and the registry's copy hold)."""
        return self.model_dump(mode="json")


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write manifest.json atomically (temp file + os.replace)."""
    text = json.dumps(manifest.dump(), indent=2, default=str, ensure_ascii=False)
    write_text_atomic(Path(folder) / MANIFEST, text)


def read_manifest(folder: Path) -> Manifest | None:
    """The folder's manifest; None when it has none (not a checkpoint). A broken one is a CheckpointError."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise CheckpointError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def load_manifest(folder: Path) -> Manifest:
    """The manifest of a checkpoint that must exist: a missing folder or manifest is a CheckpointError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    manifest = read_manifest(folder)
    if manifest is None:
        raise CheckpointError(f"{folder}: no manifest.json, so not a complete checkpoint")
    return manifest


def update_manifest(folder: Path, change: Callable[[Manifest], None]) -> Manifest:
    """Read, change and atomically rewrite a checkpoint's manifest."""
    manifest = load_manifest(folder)
    change(manifest)
    write_manifest(folder, manifest)
    return manifest


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
) -> Manifest:
    return Manifest(
        version=version,
        parent=parent,
        stage=stage,
        datasets=datasets,
        config=config,
        steps=steps,
        metrics=metrics,
        git_commit=git_commit(),
        created_at=datetime.now(UTC).isoformat(),
        **(extra or {}),
    )


def write_checkpoint(dest: Path, fill: Callable[[Path], None], manifest: Manifest) -> Path:
    """Create checkpoint ``dest``: ``fill(tmp)`` writes the files, the manifest goes last, then rename.

    A crash at any point leaves either nothing at ``dest`` or a complete checkpoint.
    """
    dest = Path(dest)
    if dest.exists():
        raise CheckpointError(f"checkpoint folder already exists: {dest}")
    with atomic_folder(dest) as tmp:
        fill(tmp)
        write_manifest(tmp, manifest)
    return dest


def clean_debris(parent_dir: Path) -> list[Path]:
    """Remove temp folders a killed writer left behind (``.<name>.tmp-*``)."""
    removed = []
    for p in Path(parent_dir).glob(".*.tmp-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed
