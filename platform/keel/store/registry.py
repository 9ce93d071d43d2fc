"""Checkpoint registry: a DuckDB row per checkpoint plus the folder's manifest.json, kept in step."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from keel.errors import KeelError, NoSpace
from keel.store import aliases
from keel.store.db import Database
from keelcommon.files import out_of_space
from training import checkpoint

STATUSES = ("candidate", "serving", "retired", "rejected")


class RegistryError(KeelError, ValueError):
    """One line for the user."""


class UnknownVersion(RegistryError):
    status = 404
    code = "not_found"


class InvalidVersion(RegistryError):
    param = "version"


class RegistryNoSpace(RegistryError, NoSpace):
    """The database's disk is full: the checkpoint was not registered."""


# A version becomes a folder name (backups write checkpoints/<version>, restore reads it back): one
# path component of a small, safe alphabet, never `.`/`..`, a separator or NUL.
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def check_version(version: str) -> str:
    """``version`` when it is a valid version name, else an ``InvalidVersion`` that says the rule."""
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version) or ".." in version:
        shown = repr(version)[:80]
        raise InvalidVersion(
            f"invalid version name {shown}: 1-128 characters of A-Z a-z 0-9 . _ + -, starting with a "
            "letter or digit, without '..' (it names a folder in backups)"
        )
    return version


@dataclass
class Checkpoint:
    version: str
    path: str
    parent: str | None
    stage: str | None
    status: str
    created_at: str | None
    promoted_at: str | None
    promoted_by: str | None
    retired_at: str | None
    rolled_back_at: str | None
    rolled_back_by: str | None
    manifest: dict[str, Any]

    @property
    def gate(self) -> dict[str, Any] | None:
        return (self.manifest.get("eval") or {}).get("gate")

    @property
    def gate_passed(self) -> bool | None:
        g = self.gate
        return None if g is None else bool(g.get("passed"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gate_passed"] = self.gate_passed
        return d


_COLS = "version, path, parent, stage, status, created_at, promoted_at, promoted_by, retired_at, rolled_back_at, rolled_back_by, manifest"


def _iso(v: Any) -> str | None:
    return v.isoformat() if v is not None else None


def _row(r: tuple) -> Checkpoint:
    v, path, parent, stage, status, created, prom, prom_by, ret, rb, rb_by, manifest = r
    m = json.loads(manifest) if isinstance(manifest, str) else (manifest or {})
    live = read_manifest(Path(path))  # the folder's manifest is the fresher one (eval writes into it)
    if live is not None:
        m = {**m, **live}
    return Checkpoint(
        v, path, parent, stage, status, _iso(created), _iso(prom), prom_by, _iso(ret), _iso(rb), rb_by, m
    )


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest as the registry keeps it (JSON), or None when the folder has none."""
    try:
        m = checkpoint.read_manifest(folder)
    except checkpoint.CheckpointError as e:
        raise RegistryError(str(e)) from None
    return m.dump() if m is not None else None


def update_manifest(folder: Path, changes: dict[str, Any]) -> None:
    """Merge changes into manifest.json atomically; silently skips folders we do not own (no manifest)."""
    if not checkpoint.is_checkpoint(folder) or not os.access(folder, os.W_OK):
        return

    def change(m: checkpoint.Manifest) -> None:
        for key, value in changes.items():
            setattr(m, key, value)

    checkpoint.update_manifest(folder, change)


def register(db: Database, version: str, path: Path, manifest: dict, status: str = "candidate") -> None:
    check_version(version)
    try:
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
    except duckdb.Error as e:  # the insert is one transaction: on a full disk, nothing was registered
        if not out_of_space(e):
            raise
        raise RegistryNoSpace(
            f"checkpoint {version} not registered: the database {db.path}: no space left on device"
        ) from e


def add(db: Database, path: Path, version: str | None = None) -> Checkpoint:
    """Register a training output folder. It must be complete: a folder without manifest.json is not a checkpoint."""
    if "\x00" in str(path):
        raise RegistryError("checkpoint path contains a NUL byte")
    try:
        path = path.expanduser().resolve()
        found = path.is_dir()
    except OSError as e:  # a name too long, a loop of links: the caller's path, not a fault
        raise RegistryError(f"checkpoint folder {str(path)[:200]}: {e.strerror}") from None
    if not found:
        raise RegistryError(f"checkpoint folder not found: {path}")
    manifest = read_manifest(path)
    if manifest is None:
        raise RegistryError(f"{path} has no manifest.json: not a complete checkpoint")
    version = check_version(version or manifest.get("version") or path.name)
    existing = find(db, version)
    if existing is not None:
        if Path(existing.path).resolve() == path:
            return existing
        raise RegistryError(f"version {version!r} is already registered for {existing.path}")
    register(db, version, path, manifest)
    return get(db, version)


def find(db: Database, version: str) -> Checkpoint | None:
    rows = db.fetchall(f"SELECT {_COLS} FROM checkpoints WHERE version = ?", [version])
    return _row(rows[0]) if rows else None


def get(db: Database, version: str) -> Checkpoint:
    cp = find(db, version)
    if cp is None:
        raise UnknownVersion(f"unknown version {version!r} (see `keel checkpoints list`)")
    return cp


def list_all(db: Database) -> list[Checkpoint]:
    return [_row(r) for r in db.fetchall(f"SELECT {_COLS} FROM checkpoints ORDER BY created_at")]


def serving(db: Database) -> tuple[str, Path] | None:
    """What serves now: the ``champion`` alias is the one answer (promotion and rollback move it); the
    ``serving`` status below and the engine pool's version follow it."""
    version = aliases.get(db, aliases.CHAMPION)
    cp = find(db, version) if version else None
    return (cp.version, Path(cp.path)) if cp else None


def mark_serving(db: Database, version: str, by: str, rollback: bool = False) -> None:
    """`version` serves from now on; the one that served before is retired (one transaction)."""
    now = datetime.now(UTC)
    with db.lock:
        cur = db.cursor()
        cur.execute("BEGIN")
        try:
            if rollback:
                cur.execute(
                    "UPDATE checkpoints SET status = 'retired', retired_at = ?, rolled_back_at = ?, rolled_back_by = ? "
                    "WHERE status = 'serving' AND version <> ?",
                    [now, now, by, version],
                )
            else:
                cur.execute(
                    "UPDATE checkpoints SET status = 'retired', retired_at = ? WHERE status = 'serving' AND version <> ?",
                    [now, version],
                )
            cur.execute(
                "UPDATE checkpoints SET status = 'serving', promoted_at = ?, promoted_by = ? WHERE version = ?",
                [now, by, version],
            )
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise
    for cp in list_all(db):
        update_manifest(
            Path(cp.path),
            {
                "status": cp.status,
                "promoted_at": cp.promoted_at,
                "promoted_by": cp.promoted_by,
                "rolled_back_at": cp.rolled_back_at,
                "rolled_back_by": cp.rolled_back_by,
            },
        )


def set_status(db: Database, version: str, status: str) -> None:
    if status not in STATUSES:
        raise RegistryError(f"unknown status {status!r}")
    db.execute("UPDATE checkpoints SET status = ? WHERE version = ?", [status, version])
    update_manifest(Path(get(db, version).path), {"status": status})


def ensure_base_registered(db: Database, base_dir: Path) -> None:
    """`base` is the first serving version when nothing else has been promoted."""
    manifest = read_manifest(base_dir) or {"version": "base", "stage": "base"}
    has_serving = serving(db) is not None
    register(db, "base", base_dir, manifest, status="candidate" if has_serving else "serving")
    if not has_serving:
        db.execute("UPDATE checkpoints SET promoted_at = now(), promoted_by = 'keel' WHERE version = 'base'")
