"""Checkpoint folders and their manifest: the one owner of ``manifest.json``.

A checkpoint is written to a temporary path and renamed into place, ``manifest.json`` last; a folder
without a complete manifest is not a checkpoint (DESIGN.md). Training, evaluation, the registry and the
base model all read and write manifests through ``Manifest`` here, so lineage has one format.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keelcommon.files import atomic_folder, out_of_space, write_text_atomic
from training.errors import TrainingError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
TRAINER_STATE = "trainer_state.json"
# in a run's work folder, rewritten each optimizer step: what a person following the run reads
# (step n of N, last logged loss, tokens/s, elapsed, ETA); the platform shows it for a running cycle step
PROGRESS_FILE = "progress.json"

log = logging.getLogger(__name__)


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

    A crash at any point leaves either nothing at ``dest`` or a complete checkpoint; so does a failed write,
    whose temporary folder is gone before the error is raised (a full disk: a one-line CheckpointError).
    """
    dest = Path(dest)
    if dest.exists():
        raise CheckpointError(f"checkpoint folder already exists: {dest}")
    try:
        with atomic_folder(dest) as tmp:
            fill(tmp)
            write_manifest(tmp, manifest)
    except Exception as e:
        if out_of_space(e):  # safetensors and torch wrap the OSError in errors of their own
            raise CheckpointError(
                f"checkpoint {dest} not written: no space left on device in {dest.parent} (nothing was kept)"
            ) from e
        raise
    return dest


def clean_debris(parent_dir: Path) -> list[Path]:
    """Remove temp folders a killed writer left behind (``.<name>.tmp-*``)."""
    removed = []
    for p in Path(parent_dir).glob(".*.tmp-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


# ---- resumable trainer states (``<work>/checkpoint-N``) ------------------------------------------------
# The Trainer writes weights, optimizer, scheduler and RNG state, then trainer_state.json, with no fsync and
# no rename: a machine that crashes or a disk that fills mid-save can leave trainer_state.json beside a
# weights file cut short or of zeros. Each file's own framing says whether it is whole without reading the
# tensors: a safetensors header names the byte length of its data, a torch zip ends in its directory.


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    if size < 8:
        return f"{path.name} is {size} bytes"
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n == 0 or 8 + n > size:
            return f"{path.name}: header length {n} does not fit its {size} bytes"
        try:
            header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return f"{path.name}: unreadable safetensors header"
    if 8 + n + end != size:
        return f"{path.name} is {size} bytes, its header describes {8 + n + end}"
    return None


def _torch_zip_problem(path: Path) -> str | None:
    """torch.save's zip format: the central directory at the end, each entry inside the file."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as z:
            last = max(z.infolist(), key=lambda i: i.header_offset, default=None)
            if last is None or last.header_offset + last.compress_size > size:
                return f"{path.name} is cut short"
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        return f"{path.name} is not a whole torch file ({e})"
    return None


def _file_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path.name} is missing"
    if path.suffix == ".safetensors":
        return _safetensors_problem(path)
    if path.suffix in (".bin", ".pt", ".pth"):
        return _torch_zip_problem(path)
    return None if path.stat().st_size > 0 else f"{path.name} is empty"


def _weight_files(folder: Path) -> list[Path]:
    """The weights a save holds: a sharded model through its index's shards, else the single files."""
    files: list[Path] = []
    for index in sorted(folder.glob("*.safetensors.index.json")) + sorted(folder.glob("*.bin.index.json")):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError):
            return [index]  # an unreadable index: reported as such by its caller's check
        files += [folder / s for s in sorted(shards)]
    named = {p.name for p in files}
    for pattern in ("*.safetensors", "pytorch_model*.bin", "adapter_model.bin"):
        files += [p for p in sorted(folder.glob(pattern)) if p.name not in named]
    return files


def trainer_state_problem(folder: Path) -> str | None:
    """Why the Trainer save ``folder`` (``checkpoint-N``) cannot be resumed from; None when it is whole."""
    folder = Path(folder)
    try:
        state = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {TRAINER_STATE}"
    except (OSError, ValueError) as e:
        return f"{TRAINER_STATE} is unreadable ({type(e).__name__})"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return f"{TRAINER_STATE} has no global_step"
    needed = _weight_files(folder)
    tag = folder / "latest"  # DeepSpeed keeps optimizer and model states in <tag>/ ('latest' names it)
    if tag.is_file():
        sub = folder / tag.read_text(encoding="utf-8").strip()
        parts = sorted(sub.glob("*.pt")) if sub.is_dir() else []
        if not parts:
            return f"DeepSpeed states {sub.name}/ are missing"
        needed += parts
    elif not needed:
        return "no weights"
    else:
        needed.append(folder / "optimizer.pt")
    # written beside them when the run has them: whole if present
    needed += [p for p in sorted(folder.glob("*.pt")) + sorted(folder.glob("*.pth")) if p not in needed]
    for f in needed:
        if f.name.endswith(".index.json"):
            return f"{f.name} is unreadable"
        if (problem := _file_problem(f)) is not None:
            return problem
    return None


def last_complete_state(work: Path) -> Path | None:
    """The newest ``checkpoint-N`` under ``work`` that a resume can load; a newer one a crash or a full disk
    cut short is passed over (with a warning naming what is wrong) for the one before it."""
    states = [p for p in Path(work).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for p in sorted(states, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        problem = trainer_state_problem(p)
        if problem is None:
            return p
        if (p / TRAINER_STATE).exists():  # a save still being written has none yet: nothing to warn about
            log.warning("trainer state %s is incomplete (%s): not resumed from", p, problem)
    return None
