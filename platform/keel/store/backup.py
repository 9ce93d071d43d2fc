"""`keel backup` / `keel restore`: everything a platform's data dir holds that another one needs, as one folder.

A backup of a running platform is consistent without stopping it:
- **DuckDB**: the request-log writer is flushed, then ``COPY FROM DATABASE`` copies every table,
  index and sequence into a new file in one statement, i.e. one transaction: one snapshot, while
  requests keep being logged (the copy never blocks the writer);
- **the index** (catalog + Chroma): copied while the background indexer is paused (its dense pass
  stops between two batches and resumes afterwards); SQLite files through SQLite's backup API;
- **checkpoints**: immutable once renamed into place, so each registered folder is copied as is;
- **the router model** (``<data_dir>/router/``, what `keel router train` and the cycle refit), **the
  schedule** (``scheduler.sqlite``, through SQLite's backup API), **datasets** (``<data_dir>/datasets/``:
  exports and prepared snapshots, immutable once renamed) and **cycles** (``<data_dir>/cycles/``: each
  cycle's step outputs and report), so a restore brings back the same routing and a lineage whose
  folders exist. Whatever else the data dir holds is listed in ``backup.json``'s ``left_out`` with
  the reason (run files, engine logs, ...), and so is anything outside it a lineage row points at.

The backup is written beside its destination and renamed into place last: a folder with a
``backup.json`` is complete. Restore goes into a stopped platform's data dir and points the registry
at the restored checkpoint folders.

Layout::

    DEST/backup.json            what is inside (format, time, serving version, counts, checkpoints)
    DEST/keel.duckdb            the database
    DEST/rag/                   catalog.json + chroma/
    DEST/checkpoints/VERSION/   each registered checkpoint folder (unless --no-checkpoints)
    DEST/router/                the refitted router model (when there is one)
    DEST/scheduler.sqlite       the nightly cycle's job store
    DEST/datasets/              exports and prepared datasets
    DEST/cycles/                cycle folders (step outputs, logs, reports)
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

from keel.errors import KeelError, NoSpace, Unavailable
from keel.store import registry
from keelcommon.files import out_of_space

FORMAT = 1
MANIFEST = "backup.json"
# data-dir folders copied whole (their contents are written atomically, then never changed)
FOLDERS = ("router", "datasets", "cycles")
SCHEDULE = "scheduler.sqlite"
# what a data dir holds that a backup leaves out on purpose, and why
NOT_BACKED_UP = {
    "run": "the running platform's pid/URL file and admin key: made anew by the platform that starts",
    "logs": "engine and child-process logs",
    "journal": "request-log journal: a running platform's rows are in the database copy",
}


class BackupError(KeelError):
    """A backup or restore refused or failed; nothing half-written is left looking complete. One line."""

    param = "dest"


class BackupBusy(BackupError, Unavailable):
    """Not taken now (another backup runs, the indexer would not pause): try again later."""


class BackupNoSpace(BackupError, NoSpace):
    """The destination's disk filled while the backup was written (its temporary folder is removed), or
    the data dir's while a restore was staged (the data dir is left as it was)."""


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
    included: list[str] = field(default_factory=list)  # data-dir parts copied (router, scheduler.sqlite, ...)
    left_out: list[dict[str, str]] = field(default_factory=list)  # {path, why}: everything not copied
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
    restored: list[str] = field(default_factory=list)  # data-dir parts copied back (router, datasets, ...)
    left_out: list[dict[str, str]] = field(default_factory=list)  # what the backup says it does not hold

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


def _copy_live_tree(src: Path, dst: Path) -> None:
    """A data-dir folder that may be written while it is copied: what is being written (an atomic
    write's temp sibling, ``.x.tmp-...``) is left out, and a file that disappears mid-copy is skipped."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if ".tmp" in n or n.endswith(("-wal", "-shm", "-journal"))}

    try:
        shutil.copytree(src, dst, ignore=ignore, symlinks=True)
    except shutil.Error as e:  # files removed between listing and copying: everything else is there
        vanished = [err for err in e.args[0] if not Path(err[0]).exists()]
        if len(vanished) != len(e.args[0]):
            raise


def _copy_data_parts(settings, work: Path, summary: BackupSummary) -> None:
    """The router model, the schedule, datasets and cycle folders; every other entry of the data dir is
    named in ``summary.left_out`` with the reason."""
    data_dir = Path(settings.data_dir)
    for name in FOLDERS:
        if (data_dir / name).is_dir():
            _copy_live_tree(data_dir / name, work / name)
            summary.included.append(name)
    if (data_dir / SCHEDULE).is_file():
        _copy_sqlite(data_dir / SCHEDULE, work / SCHEDULE)
        summary.included.append(SCHEDULE)
    handled = {*FOLDERS, SCHEDULE, "checkpoints", Path(settings.db_path).name}
    for p in (settings.rag_index_dir, settings.journal_dir):
        if Path(p).parent == data_dir:
            handled.add(Path(p).name)
    for entry in sorted(data_dir.iterdir()) if data_dir.is_dir() else []:
        name = entry.name
        if name in handled and not (name == settings.journal_dir.name and summary.live):
            continue
        if name.startswith(f"{Path(settings.db_path).name}.") or name.startswith("."):
            why = "the database's own temporary or write-ahead file: its content is in keel.duckdb"
        elif name.startswith("before-restore-"):
            why = "state an earlier restore moved aside"
        else:
            why = NOT_BACKED_UP.get(name, "not a part of Keel's data dir that a backup copies")
        summary.left_out.append({"path": str(entry), "why": why})
    model = getattr(getattr(settings, "router", None), "model_file", None)
    if model and not Path(model).expanduser().resolve().is_relative_to(data_dir.resolve()):
        summary.left_out.append({"path": str(model), "why": "router.model_file is outside the data dir"})


def _uncopied_checkpoint_folders(
    settings, entries: list[dict[str, Any]], checkpoints: bool
) -> list[dict[str, str]]:
    """What the data dir's checkpoints/ holds that the backup does not: unregistered folders, a training
    run's work folder, everything with --no-checkpoints."""
    folder = Path(settings.checkpoints_dir)
    if not folder.is_dir():
        return []
    copied = {Path(e["path"]).resolve() for e in entries if e["copied"]}
    out = []
    for entry in sorted(folder.iterdir()):
        if entry.resolve() in copied:
            continue
        if not checkpoints:
            why = "checkpoints left out (--no-checkpoints)"
        elif entry.name.startswith("."):
            why = "a training run's work or temporary folder"
        else:
            why = "not a registered checkpoint"
        out.append({"path": str(entry), "why": why})
    return out


def _outside_exports(db_file: Path, data_dir: Path) -> list[dict[str, str]]:
    """Export folders the lineage points at that live outside the data dir (annotation.export_dir)."""
    con = duckdb.connect(str(db_file), read_only=True)
    try:
        have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        paths = (
            [r[0] for r in con.execute("SELECT path FROM exports").fetchall()] if "exports" in have else []
        )
    finally:
        con.close()
    root = data_dir.resolve()
    return [
        {"path": p, "why": "an export outside the data dir: not in backup"}
        for p in paths
        if not Path(p).expanduser().resolve().is_relative_to(root)
    ]


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
    try:
        work.mkdir(mode=0o700)
        if flush is not None:
            flush()  # every row submitted so far is in DuckDB before the snapshot
        _copy_database(db, work / "keel.duckdb")
        serving, counts, registered = _describe(work / "keel.duckdb")
        summary = BackupSummary(
            path=str(dest),
            created_at=datetime.now(UTC).isoformat(),
            source_data_dir=str(Path(settings.data_dir).resolve()),
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
        _copy_data_parts(settings, work, summary)
        summary.left_out += _outside_exports(work / "keel.duckdb", Path(settings.data_dir))
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
        summary.left_out += _uncopied_checkpoint_folders(settings, summary.checkpoints, checkpoints)
        summary.seconds = round(time.monotonic() - t0, 3)
        (work / MANIFEST).write_text(json.dumps(summary.to_dict(), indent=2))
        if dest.exists():  # an empty folder the caller made
            dest.rmdir()
        os.replace(work, dest)
    except BaseException as e:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(e, Exception) and not isinstance(e, BackupError):
            _raise_write_failure(e, dest.parent, f"backup to {dest}", "nothing was kept")
        raise
    return summary


def _raise_write_failure(e: Exception, disk: Path, what: str, kept: str) -> None:
    """A write the OS refused (a full disk above all) as one BackupError line: ``what`` failed, on the
    disk of ``disk``, and ``kept`` says what that left. Anything else is a bug and keeps its traceback
    (the caller re-raises it)."""
    if out_of_space(e):
        try:
            free = f" ({shutil.disk_usage(disk).free // 1024} KiB free once cleaned up)"
        except OSError:
            free = ""
        raise BackupNoSpace(f"{what} failed: no space left on device in {disk}{free}; {kept}") from e
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        _src, dst, why = e.args[0][0]
        raise BackupError(f"{what} failed: {dst}: {why}; {kept}") from e
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        raise BackupError(f"{what} failed: {where}{e.strerror or e}; {kept}") from e
    if isinstance(e, (duckdb.IOException, sqlite3.OperationalError)):
        raise BackupError(f"{what} failed: {str(e).splitlines()[0]}; {kept}") from e


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


# where the database keeps file paths: plain columns, and JSON documents that embed them
PATH_COLUMNS = [("checkpoints", "path"), ("exports", "path"), ("evals", "path"), ("cycles", "report")]
JSON_COLUMNS = [
    ("checkpoints", "manifest"),
    ("cycles", "serving"),
    ("cycles", "config"),
    ("cycle_steps", "output"),
]


def _rewrite_paths(con, moves: list[tuple[str, str]]) -> None:
    """Every stored path under an old folder now under its new one (the source host's data dir → this
    one; an outside checkpoint folder → its restored copy), so lineage and reports point at what exists."""
    cols = set(con.execute("SELECT table_name, column_name FROM duckdb_columns()").fetchall())
    for old, new in moves:
        if old == new:
            continue
        for table, col in PATH_COLUMNS:
            if (table, col) in cols:
                con.execute(
                    f'UPDATE "{table}" SET "{col}" = ? || substr("{col}", ?) WHERE starts_with("{col}", ?)',
                    [new, len(old) + 1, old],
                )
        old_j, new_j = json.dumps(old)[1:-1], json.dumps(new)[1:-1]  # as the path reads inside JSON
        for table, col in JSON_COLUMNS:
            if (table, col) in cols:
                con.execute(
                    f'UPDATE "{table}" SET "{col}" = CAST(replace(CAST("{col}" AS VARCHAR), ?, ?) AS JSON) '
                    f'WHERE contains(CAST("{col}" AS VARCHAR), ?)',
                    [old_j, new_j, old_j],
                )


def _mark_not_in_backup(con, paths: list[str]) -> None:
    """Exports the backup did not hold say so in their stats, which lineage shows (``backup``)."""
    have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "exports" not in have:
        return
    for path in paths:
        con.execute(
            "UPDATE exports SET stats = json_merge_patch(coalesce(stats, '{}'), ?) WHERE path = ?",
            [json.dumps({"backup": "not in backup"}), path],
        )


def _staging(dst: Path, staged: list[tuple[Path, Path]]) -> Path:
    """The temporary sibling ``dst`` is copied to (``.NAME.restore-PID``), listed in ``staged`` before
    anything is written, so a copy cut short is removed too (with a parent folder made for it)."""
    tmp = dst.with_name(f".{dst.name}.restore-{os.getpid()}")
    _remove(tmp)
    if not tmp.parent.exists():
        staged.append((tmp.parent, tmp.parent))
        tmp.parent.mkdir(parents=True)
    staged.append((tmp, dst))
    return tmp


def _stage_tree(src: Path, dst: Path, staged: list[tuple[Path, Path]]) -> None:
    """Copy a folder next to its destination; renamed into place later."""
    shutil.copytree(src, _staging(dst, staged), symlinks=True)


def _stage_file(src: Path, dst: Path, staged: list[tuple[Path, Path]]) -> Path:
    tmp = _staging(dst, staged)
    shutil.copy2(src, tmp)
    return tmp


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def restore(settings, src: Path, *, force: bool = False) -> RestoreSummary:
    """Restore a backup into this (stopped) platform's data dir. ``force`` moves existing state aside.

    All or nothing: every part is first copied next to its place (``.NAME.restore-PID``) while the data
    dir's current state stays where it is; only once all of them are written does that state move aside
    and the copies get renamed into place (renames take no space). A copy the disk cuts short (full) is
    one BackupNoSpace line, with every staged copy removed and the data dir as it was."""
    src = _user_path(src, "backup")
    info = read_manifest(src)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    parts = [name for name in (*FOLDERS, SCHEDULE) if (src / name).exists()]
    existing = [
        p
        for p in (
            settings.db_path,
            settings.rag_index_dir,
            settings.journal_dir,
            *(data_dir / n for n in parts),
        )
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
    if existing and not force:
        raise BackupError(
            f"{existing[0]} already exists: restore into an empty data dir, or --force to move "
            "the current state aside first"
        )

    staged: list[tuple[Path, Path]] = []  # (copy, its place), renamed in this order
    moved: list[tuple[Path, Path]] = []  # renames done, undone in reverse if a later one fails
    aside: Path | None = None
    tmp_db = settings.db_path.with_name(f".{settings.db_path.name}.restore-{os.getpid()}")
    try:
        if existing:  # made first: a full disk cannot refuse the folder once the copies are in
            folder = data_dir / f"before-restore-{datetime.now(UTC):%Y%m%dT%H%M%S}"
            folder.mkdir()
            aside = folder
            for p in existing:
                rel = p.relative_to(data_dir) if p.is_relative_to(data_dir) else Path(p.name)
                (aside / rel).parent.mkdir(parents=True, exist_ok=True)
        restored: list[dict[str, str]] = []
        for version, from_dir, target in planned:
            _stage_tree(from_dir, target, staged)
            restored.append({"version": version, "path": str(target)})
        if (src / "rag").is_dir():
            _stage_tree(src / "rag", settings.rag_index_dir, staged)
        for name in parts:
            if (src / name).is_dir():
                _stage_tree(src / name, data_dir / name, staged)
            else:
                _stage_file(src / name, data_dir / name, staged)
        if (src / "journal").is_dir():
            _stage_tree(src / "journal", settings.journal_dir, staged)
        tmp_db = _stage_file(src / "keel.duckdb", settings.db_path, staged)
        requests = _point_at_restored(tmp_db, info, restored, Path(data_dir))

        for p in existing:  # everything is written: the current state moves aside, the copies go in
            rel = p.relative_to(data_dir) if p.is_relative_to(data_dir) else Path(p.name)
            assert aside is not None
            os.replace(p, aside / rel)
            moved.append((p, aside / rel))
        for tmp, dst in staged:
            if tmp != dst:  # (a parent folder made for a copy is listed as itself)
                os.replace(tmp, dst)
                moved.append((dst, tmp))
    except BaseException as e:
        for now, before in reversed(moved):
            with contextlib.suppress(OSError):
                os.replace(now, before)
        for tmp, dst in reversed(staged):
            if tmp != dst:
                _remove(tmp)
            else:  # a parent folder made for a copy: removed when empty again
                with contextlib.suppress(OSError):
                    tmp.rmdir()
        _remove(tmp_db.with_name(tmp_db.name + ".wal"))
        if aside is not None:  # its empty folders; anything that could not move back stays there
            for d in sorted(aside.rglob("*"), key=lambda d: len(d.parts), reverse=True) + [aside]:
                with contextlib.suppress(OSError):
                    d.rmdir()
        if isinstance(e, Exception) and not isinstance(e, BackupError):
            _raise_write_failure(
                e, data_dir, f"restore of {src} into {data_dir}", "the data dir is as it was"
            )
        raise
    return RestoreSummary(
        data_dir=str(data_dir),
        serving_version=info.get("serving_version"),
        requests=requests,
        checkpoints=restored,
        rag=(src / "rag").is_dir(),
        moved_aside=str(aside) if aside is not None else None,
        restored=parts,
        left_out=list(info.get("left_out", [])),
    )


def _point_at_restored(
    db_file: Path, info: dict[str, Any], restored: list[dict[str, str]], data_dir: Path
) -> int:
    """The staged database's paths moved to this data dir (the registry at the restored checkpoint
    folders); its request count."""
    con = duckdb.connect(str(db_file))
    try:
        old_paths = {c.get("version"): c.get("path") for c in info.get("checkpoints", [])}
        for entry in restored:  # the registry points at the restored folders, not the source host's
            con.execute(
                "UPDATE checkpoints SET path = ? WHERE version = ?", [entry["path"], entry["version"]]
            )
        moves = [
            (f"{old_paths[e['version']]}/", f"{e['path']}/") for e in restored if old_paths.get(e["version"])
        ]
        if info.get("source_data_dir"):
            moves.append((f"{info['source_data_dir'].rstrip('/')}/", f"{data_dir.resolve()}/"))
        _rewrite_paths(con, moves)
        _mark_not_in_backup(con, [e["path"] for e in info.get("left_out", [])])
        requests = con.execute("SELECT count(*) FROM requests").fetchone()[0]
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return requests
