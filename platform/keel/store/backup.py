"""`keel backup` / `keel restore`: the database, the document index and the checkpoints, as one folder.

A backup of a running platform is consistent without stopping it:
- **DuckDB**: the request-log writer is flushed, then ``COPY FROM DATABASE`` copies every table,
  index and sequence into a new file in one statement, i.e. one transaction: one snapshot, while
  requests keep being logged (the copy never blocks the writer);
- **the index** (catalog + Chroma): copied while the background indexer is paused (its dense pass
  stops between two batches and resumes afterwards); SQLite files through SQLite's backup API;
- **checkpoints**: immutable once renamed into place, so each registered folder is copied as is.

The backup is written beside its destination and renamed into place last: a folder with a
``backup.json`` is complete. Restore goes into a stopped platform's data dir and points the registry
at the restored checkpoint folders.

Layout::

    DEST/backup.json            what is inside (format, time, serving version, counts, checkpoints)
    DEST/keel.duckdb            the database
    DEST/rag/                   catalog.json + chroma/
    DEST/checkpoints/VERSION/   each registered checkpoint folder (unless --no-checkpoints)
    DEST/journal/               request-log journal segments (only a backup of a stopped platform:
                                rows a killed platform journaled but had not committed yet)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from keel.errors import KeelError
from keel.store import registry

FORMAT = 1
MANIFEST = "backup.json"


class BackupError(KeelError):
    """A backup or restore refused or failed; nothing half-written is left looking complete. One line."""

    param = "dest"


class BackupBusy(BackupError):
    """Not taken now (another backup runs, the indexer would not pause): try again later."""

    status = 503
    code = "busy"


@dataclass
class BackupSummary:
    path: str
    created_at: str
    format: int = FORMAT
    source_data_dir: str = ""
    serving_version: str | None = None
    requests: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # {version, path, copied}
    rag: bool = False
    journal_segments: int = 0
    live: bool = False  # taken from a running platform
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RestoreSummary:
    data_dir: str
    serving_version: str | None
    requests: int
    checkpoints: list[dict[str, str]]
    rag: bool
    moved_aside: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _user_path(path: Path, what: str) -> Path:
    """``path`` resolved; a NUL byte or a name the OS refuses is the caller's mistake, said in one line."""
    if "\x00" in str(path):
        raise BackupError(f"the {what} path contains a NUL byte")
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError) as e:
        raise BackupError(f"{what} {str(path)[:200]}: {getattr(e, 'strerror', None) or e}") from None


def _fresh_dest(dest: Path) -> Path:
    dest = _user_path(dest, "backup destination")
    try:
        taken = dest.exists() and (not dest.is_dir() or any(dest.iterdir()))
    except OSError as e:
        raise BackupError(f"{str(dest)[:200]}: {e.strerror}") from None
    if taken:
        raise BackupError(f"{dest} already exists and is not empty: back up into a new folder")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BackupError(f"cannot create {dest.parent}: {e.strerror}") from e
    return dest


def _inside(folder: Path, version: str) -> Path | None:
    """``folder/version`` when ``version`` is a valid version name and stays inside ``folder``; else None
    (a row registered before names were checked, e.g. ``../../x``, must not send a copy elsewhere)."""
    try:
        registry.check_version(version)
    except registry.RegistryError:
        return None
    target = folder / version
    return target if target.resolve().is_relative_to(folder.resolve()) else None


def _copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite file even if a reader has it open (Chroma's chroma.sqlite3)."""
    s = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    d = sqlite3.connect(dst)
    try:
        s.backup(d)
    finally:
        d.close()
        s.close()


def copy_index(src: Path, dst: Path) -> None:
    """The index folder; SQLite databases through the backup API, their -wal/-shm files left out."""
    sqlite_files = {p for p in src.rglob("*.sqlite3")}

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = set()
        for n in names:
            p = Path(folder) / n
            if p in sqlite_files or n.endswith(("-wal", "-shm", "-journal")) or ".tmp" in n:
                skip.add(n)
        return skip

    shutil.copytree(src, dst, ignore=ignore, symlinks=True)
    for f in sqlite_files:
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_sqlite(f, target)


def _copy_database(db, target: Path) -> None:
    """Every table, index and sequence of the live database into a new file, in one statement."""
    cur = db.cursor()
    name = cur.execute("SELECT current_database()").fetchone()[0]
    cur.execute(f"ATTACH '{target}' AS keel_backup")
    try:
        cur.execute(f'COPY FROM DATABASE "{name}" TO keel_backup')
    finally:
        cur.execute("DETACH keel_backup")


def _describe(db_file: Path) -> tuple[str | None, dict[str, int], list[tuple[str, str]]]:
    con = duckdb.connect(str(db_file), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        serving = con.execute(
            "SELECT version FROM checkpoints WHERE status = 'serving' ORDER BY promoted_at DESC NULLS LAST LIMIT 1"
        ).fetchall()
        cps = con.execute("SELECT version, path FROM checkpoints ORDER BY created_at").fetchall()
    finally:
        con.close()
    return (serving[0][0] if serving else None), counts, [(v, p) for v, p in cps]


def backup(
    settings,
    db,
    dest: Path,
    *,
    flush=None,
    indexer=None,
    checkpoints: bool = True,
    live: bool = False,
) -> BackupSummary:
    """Write a backup of this data dir to ``dest`` (a new folder). ``db`` is the open platform database."""
    t0 = time.monotonic()
    dest = _fresh_dest(dest)
    work = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    try:
        if flush is not None:
            flush()  # every row submitted so far is in DuckDB before the snapshot
        _copy_database(db, work / "keel.duckdb")
        serving, counts, registered = _describe(work / "keel.duckdb")
        summary = BackupSummary(
            path=str(dest),
            created_at=datetime.now(UTC).isoformat(),
            source_data_dir=str(settings.data_dir),
            serving_version=serving,
            requests=counts.get("requests", 0),
            tables=counts,
            live=live,
        )
        index_dir = settings.rag_index_dir
        if index_dir.is_dir():
            pause = indexer.paused() if indexer is not None else contextlib.nullcontext()
            try:
                with pause:
                    copy_index(index_dir, work / "rag")
            except TimeoutError as e:
                raise BackupBusy(f"backup not taken: {e}") from e
            summary.rag = True
        if not live and settings.journal_dir.is_dir():
            segs = sorted(settings.journal_dir.glob("*.jsonl"))
            if segs:
                (work / "journal").mkdir()
                for seg in segs:
                    shutil.copy2(seg, work / "journal" / seg.name)
                summary.journal_segments = len(segs)
        for version, path in registered:
            entry: dict[str, Any] = {"version": version, "path": path, "copied": False}
            src = Path(path)
            target = _inside(work / "checkpoints", version)
            if target is None:
                entry["skipped"] = "invalid version name: not copied"
            elif checkpoints and src.is_dir() and (src / "manifest.json").exists():
                shutil.copytree(src, target, symlinks=False)
                entry["copied"] = True
            summary.checkpoints.append(entry)
        summary.seconds = round(time.monotonic() - t0, 3)
        (work / MANIFEST).write_text(json.dumps(summary.to_dict(), indent=2))
        if dest.exists():  # an empty folder the caller made
            dest.rmdir()
        os.replace(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return summary


def read_manifest(src: Path) -> dict[str, Any]:
    try:
        info = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError as e:
        raise BackupError(f"{src} is not a complete Keel backup (no {MANIFEST})") from e
    except ValueError as e:
        raise BackupError(f"{src / MANIFEST} is not valid JSON") from e
    if info.get("format") != FORMAT:
        raise BackupError(f"{src} has backup format {info.get('format')!r}; this Keel reads format {FORMAT}")
    if not (src / "keel.duckdb").exists():
        raise BackupError(f"{src} has no keel.duckdb")
    return info


def _copy_in(src: Path, dst: Path) -> None:
    """Copy a folder next to its destination, then rename it into place."""
    tmp = dst.with_name(f".{dst.name}.restore-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, tmp, symlinks=True)
    os.replace(tmp, dst)


def restore(settings, src: Path, *, force: bool = False) -> RestoreSummary:
    """Restore a backup into this (stopped) platform's data dir. ``force`` moves existing state aside."""
    src = _user_path(src, "backup")
    info = read_manifest(src)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    existing = [
        p
        for p in (settings.db_path, settings.rag_index_dir, settings.journal_dir)
        if p.exists() and (p.is_file() or any(p.iterdir()))
    ]
    planned = []
    for cp in info.get("checkpoints", []):
        if cp.get("copied"):
            version = str(cp.get("version"))
            target = _inside(settings.checkpoints_dir, version)
            from_dir = _inside(src / "checkpoints", version)
            if target is None or from_dir is None:
                raise BackupError(
                    f"{src / MANIFEST} names checkpoint {version[:80]!r}: not a valid version name"
                )
            planned.append((version, from_dir, target))
            if target.exists():
                existing.append(target)
    moved_aside = None
    if existing:
        if not force:
            raise BackupError(
                f"{existing[0]} already exists: restore into an empty data dir, or --force to move "
                "the current state aside first"
            )
        aside = data_dir / f"before-restore-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        aside.mkdir()
        for p in existing:
            rel = p.relative_to(data_dir) if p.is_relative_to(data_dir) else Path(p.name)
            (aside / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, aside / rel)
        moved_aside = str(aside)

    restored: list[dict[str, str]] = []
    for version, from_dir, target in planned:
        _copy_in(from_dir, target)
        restored.append({"version": version, "path": str(target)})
    if (src / "rag").is_dir():
        _copy_in(src / "rag", settings.rag_index_dir)
    if (src / "journal").is_dir():
        settings.journal_dir.mkdir(parents=True, exist_ok=True)
        for seg in (src / "journal").iterdir():
            shutil.copy2(seg, settings.journal_dir / seg.name)
    tmp_db = settings.db_path.with_name(f".{settings.db_path.name}.restore-{os.getpid()}")
    shutil.copy2(src / "keel.duckdb", tmp_db)
    con = duckdb.connect(str(tmp_db))
    try:
        for entry in restored:  # the registry points at the restored folders, not the source host's
            con.execute(
                "UPDATE checkpoints SET path = ? WHERE version = ?", [entry["path"], entry["version"]]
            )
        requests = con.execute("SELECT count(*) FROM requests").fetchone()[0]
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp_db, settings.db_path)
    return RestoreSummary(
        data_dir=str(data_dir),
        serving_version=info.get("serving_version"),
        requests=requests,
        checkpoints=restored,
        rag=(src / "rag").is_dir(),
        moved_aside=moved_aside,
    )
