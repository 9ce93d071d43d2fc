"""Atomic file writes and content hashes: the one owner of "write to a temporary name, then rename".

Checkpoints, dataset snapshots, eval results and manifests all use these, so a reader never sees half a
file and a crash leaves either nothing or the complete thing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> None:
    """``path`` gets ``text`` whole or not at all (temp file in the same folder + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str))


@contextmanager
def atomic_folder(dest: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``dest`` to fill; renamed to ``dest`` only if the block succeeds.

    Raises FileExistsError when ``dest`` already exists (checked before and at the rename).
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if dest.exists():
            raise FileExistsError(f"{dest} appeared while it was being written")
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def content_hash(folder: Path, pattern: str = "*.jsonl") -> str:
    """sha256 over every ``pattern`` file below ``folder`` (relative name + bytes), in a stable order.

    Dataset snapshots and exports are hashed by their data files, so metadata written beside them
    (stats, timestamps) never changes the hash of the same data.
    """
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob(pattern)):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
