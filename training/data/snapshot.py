"""Immutable dataset snapshots: a folder of JSONL files, a content hash and a stats file.

Layout::

    <snapshot>/train.jsonl          training rows
    <snapshot>/eval/<name>.jsonl    held-out rows (never trained on), optional
    <snapshot>/*.parquet            the same rows as Parquet, optional (``parquet: true``)
    <snapshot>/stats.json           counts (read, kept, dropped by reason, PII found, chars)
    <snapshot>/snapshot.json        kind, content hash, files; written last

The folder is written under a temporary name and renamed, so a half-written snapshot never exists.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keelcommon.jsonl
from keelcommon.files import atomic_folder, content_hash
from training.errors import TrainingError

SNAPSHOT_FILE = "snapshot.json"


class SnapshotError(TrainingError, ValueError):
    pass


class SnapshotExists(SnapshotError):
    """The destination is taken: the caller's choice of folder, not a fault (snapshots are immutable)."""

    status = 409
    code = "export_exists"
    param = "out"


@dataclass(frozen=True)
class Snapshot:
    path: Path
    kind: str
    hash: str
    train: Path
    evals: dict[str, Path]


def write_snapshot(dest: Path, kind: str, fill: Callable[[Path], dict[str, Any]]) -> Snapshot:
    """``fill(tmp)`` writes the JSONL files and returns stats; hash + metadata are added, then rename."""
    dest = Path(dest)
    if dest.exists():
        raise SnapshotExists(f"snapshot {dest} already exists (snapshots are immutable; choose a new name)")
    with atomic_folder(dest) as tmp:
        stats = fill(tmp)
        digest = content_hash(tmp)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False), encoding="utf-8")
        meta = {
            "kind": kind,
            "hash": digest,
            "files": sorted(
                p.relative_to(tmp).as_posix() for p in [*tmp.rglob("*.jsonl"), *tmp.rglob("*.parquet")]
            ),
            "created_at": datetime.now(UTC).isoformat(),
        }
        (tmp / SNAPSHOT_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return load_snapshot(dest)


def write_parquet_copies(folder: Path, batch_rows: int = 1024) -> list[Path]:
    """A Parquet file beside every JSONL file (for DuckDB/pandas), streamed in batches of rows.

    JSONL stays the canonical form (training reads it, the hash covers it); the schema is the first
    batch's, later batches are cast to it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = []
    for src in sorted(Path(folder).rglob("*.jsonl")):
        dest = src.with_suffix(".parquet")
        writer = None
        batch: list[dict[str, Any]] = []
        try:
            for _, row in iter_jsonl(src):
                batch.append(row)
                if len(batch) >= batch_rows:
                    writer = _write_batch(pa, pq, writer, dest, batch)
                    batch = []
            if batch or writer is None:
                writer = _write_batch(pa, pq, writer, dest, batch)
        finally:
            if writer is not None:
                writer.close()
        out.append(dest)
    return out


def _write_batch(pa, pq, writer, dest: Path, batch: list[dict[str, Any]]):
    schema = writer.schema if writer is not None else None
    table = pa.Table.from_pylist(batch, schema=schema)
    if writer is None:
        writer = pq.ParquetWriter(dest, table.schema)
    writer.write_table(table)
    return writer


def load_snapshot(path: Path | str) -> Snapshot:
    """Open a snapshot folder; a bare JSONL file is accepted too (hashed on the fly, no evals)."""
    path = Path(path)
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return Snapshot(path, "file", digest, path, {})
    meta_file = path / SNAPSHOT_FILE
    if not meta_file.exists():
        raise SnapshotError(f"dataset {path} is not a prepared snapshot (no {SNAPSHOT_FILE})")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    evals = {p.stem: p for p in sorted((path / "eval").glob("*.jsonl"))}
    return Snapshot(path, meta["kind"], meta["hash"], path / "train.jsonl", evals)


def iter_jsonl(path: Path, error: type[Exception] = SnapshotError):
    """Yield (line_number, row); a malformed line fails with file:line, as a SnapshotError by default."""
    return keelcommon.jsonl.iter_jsonl(path, error)


class JsonlWriter:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("w", encoding="utf-8")
        self.rows = 0

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.rows += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"


def write_rows_part(folder: Path, kind: str, rows) -> tuple[str, int]:
    """One snapshot part from (training row, provenance) tuples: train.jsonl + provenance.jsonl, hashed."""
    folder.mkdir(parents=True)
    n = 0
    with (
        (folder / "train.jsonl").open("w", encoding="utf-8") as tf,
        (folder / "provenance.jsonl").open("w", encoding="utf-8") as pf,
    ):
        for train, prov in rows:
            tf.write(_line(train))
            pf.write(_line(prov))
            n += 1
    digest = content_hash(folder)
    meta = {"kind": kind, "hash": digest, "files": ["provenance.jsonl", "train.jsonl"], "rows": n}
    (folder / "stats.json").write_text(json.dumps({"rows": n}), encoding="utf-8")
    (folder / SNAPSHOT_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return digest, n


def write_bundle(dest: Path, parts: dict[str, Any], info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Several parts (e.g. the flywheel's ``dpo`` and ``sft``) under one folder, written atomically.

    Each ``<dest>/<kind>/`` is an ordinary snapshot (``load_snapshot`` opens it); ``<dest>/snapshot.json``
    holds each part's hash and row count and one hash over all of them, and is written last.
    """
    dest = Path(dest).expanduser()
    if dest.exists():
        raise SnapshotExists(f"{dest} already exists (snapshots are immutable; choose a new name)")
    with atomic_folder(dest) as tmp:
        written = {kind: write_rows_part(tmp / kind, kind, rows) for kind, rows in parts.items()}
        digest = hashlib.sha256(
            "".join(f"{kind}:{h}\n" for kind, (h, _) in written.items()).encode()
        ).hexdigest()
        meta = {
            "kind": "bundle",  # info may name it (the flywheel's export says "flywheel")
            "hash": digest,
            "parts": {kind: {"hash": h, "rows": n} for kind, (h, n) in written.items()},
            "created_at": datetime.now(UTC).isoformat(),
            **(info or {}),
        }
        (tmp / SNAPSHOT_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta
