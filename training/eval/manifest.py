"""Read and update a checkpoint's manifest.json (the file that makes a folder a checkpoint).

Training writes manifests with the same format (``version``, ``parent``, ``stage``, ...); eval only adds an
``eval`` section. Updates are atomic (temp file + os.replace) so a reader never sees half a manifest.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from training.eval.data import EvalDataError


def read_manifest(checkpoint: Path) -> dict:
    checkpoint = Path(checkpoint)
    f = checkpoint / "manifest.json"
    if not checkpoint.is_dir():
        raise EvalDataError(f"{checkpoint}: checkpoint folder not found")
    if not f.exists():
        raise EvalDataError(f"{checkpoint}: no manifest.json, so not a complete checkpoint")
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EvalDataError(f"{f}: not valid JSON: {e.msg}") from e
    if not isinstance(data, dict):
        raise EvalDataError(f"{f}: expected a JSON object")
    return data


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def update_manifest(checkpoint: Path, change: Callable[[dict], None]) -> dict:
    manifest = read_manifest(checkpoint)
    change(manifest)
    write_json_atomic(Path(checkpoint) / "manifest.json", manifest)
    return manifest


def checkpoint_version(checkpoint: Path, manifest: dict | None = None) -> str:
    manifest = manifest if manifest is not None else read_manifest(checkpoint)
    return str(manifest.get("version") or Path(checkpoint).name)
