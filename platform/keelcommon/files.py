"""Atomic files and content hashes: the one owner of "write to a temporary name, then rename".

A reader never sees half a file: the bytes go to a temporary file in the same folder, which is flushed
and fsynced, renamed over the target (``os.replace``), and the folder is fsynced so the rename itself
survives a power loss. A crash at any point leaves the old file or the new one, and no temporary file
once the writer's ``finally`` has run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (a rename into it) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# how a full disk reads once a library has wrapped the OSError (safetensors: "... (os error 28)",
# DuckDB: "IO Error: Could not write file ...: No space left on device", SQLite: "database or disk is full")
_NO_SPACE_TEXT = ("No space left on device", "os error 28", "Disk quota exceeded", "database or disk is full")


def out_of_space(e: BaseException) -> bool:
    """Whether ``e`` is a full disk (or quota): ENOSPC/EDQUOT, or a library's own error wrapping it."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(t in str(e) for t in _NO_SPACE_TEXT)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``path`` gets ``data`` whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # O_EXCL: a fresh name of our own; 0o666 lets the umask decide the mode, as for any new file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """``path`` gets ``text`` (UTF-8) whole or not at all."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any, *, indent: int | None = 2) -> None:
    """``data`` as JSON (UTF-8, non-ASCII kept; unknown types as ``str``), whole or not at all."""
    write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str))


@contextmanager
def atomic_folder(dest: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``dest`` to fill; renamed to ``dest`` only if the block succeeds.

    Raises FileExistsError when ``dest`` already exists (checked before and at the rename). The files
    inside are not fsynced one by one (checkpoints are hundreds of MB): a killed writer leaves nothing
    at ``dest``, and the rename is made durable by fsyncing the parent folder.
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
        fsync_dir(dest.parent)
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
