"""Request log: an in-process queue drained by one batch writer thread into DuckDB.

Nothing is lost:
- every record is appended to a journal segment before the client gets its answer (survives kill -9);
- when the queue is full, records spill to a file instead of being dropped;
- a record the journal cannot take (a full disk) is refused with RecordError, counted (``unjournaled``)
  and logged: never silently dropped, and never half-written where a later append would complete it;
- a batch DuckDB cannot take (its disk is full) is kept and retried, backing off, before anything newer
  (``insert_failures``, one error line when the writes start failing, one when they go through again);
  the queue then fills and spills. A row the spill file cannot take either (the same full disk) is
  already in the journal: it is counted (``spill_failures``), logged, and read back from its journal
  segment once DuckDB writes again;
- on shutdown the queue and the spill are flushed; at start, journal and spill are replayed
  (``INSERT OR IGNORE`` on the request id makes replay idempotent).
A segment is deleted once every record in it is in DuckDB.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from keel.store.db import Database
from keelcommon.files import out_of_space
from serving.records import FLAT_ROUTE_COLUMNS, RecordError, RequestRecord

log = logging.getLogger("keel.store.requestlog")

JSON_COLUMNS = ("messages", "engine_messages", "params", "choices", "retrieved", "meta", "route_info")
SEGMENT_RECORDS = 5000


def record_row(rec: dict[str, Any]) -> dict[str, Any]:
    row = dict(rec)
    for col in JSON_COLUMNS:
        row[col] = json.dumps(row.get(col), ensure_ascii=False) if row.get(col) is not None else None
    return row


def insert_rows(db: Database, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    batch_tbl = pa.Table.from_pylist([record_row(r) for r in rows])  # noqa: F841 - DuckDB reads it by name
    with db.lock:
        cur = db.cursor()
        cur.execute("INSERT OR IGNORE INTO requests BY NAME SELECT * FROM batch_tbl")


def append_whole(fd: int, data: bytes, fsync: bool = False) -> None:
    """Append ``data`` to an O_APPEND/unbuffered file whole, or not at all: a write the disk cut short
    (ENOSPC) is truncated away before the error is raised."""
    start = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise


def _read_rows(path: Path, spill: bool) -> list[tuple[int, dict]]:
    """The (segment, row) pairs of a journal segment (segment 0) or a spill file; a torn line (a write
    cut by kill -9, or one being appended right now) is skipped."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                seg = 0
                if spill:
                    obj = json.loads(line)
                    seg, line = obj["seg"], obj["line"]
                out.append((seg, RequestRecord.model_validate_json(line).model_dump()))
            except (ValueError, KeyError, TypeError):
                log.warning("skipping a torn journal line in %s", path)
    return out


def _reason(e: BaseException) -> str:
    return "no space left on device" if out_of_space(e) else (str(e).splitlines() or [type(e).__name__])[0]


class _Journal:
    """Append-only JSONL segments with per-segment pending counts.

    A row is appended whole or not at all: a write the disk cut short (ENOSPC) is truncated away before
    the error is raised, so a segment never holds a torn line that a later write would complete (a row
    reported as not recorded must not come back at the next replay)."""

    def __init__(self, directory: Path, fsync: bool):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.lock = threading.Lock()
        self.pending: dict[int, int] = {}
        existing = [int(p.stem.split("-")[1]) for p in self.dir.glob("seg-*.jsonl")]
        self.seg = max(existing, default=0) + 1
        self.count = 0
        self.file = self._open(self.seg)

    def _path(self, seg: int) -> Path:
        return self.dir / f"seg-{seg:08d}.jsonl"

    def _open(self, seg: int):
        return open(self._path(seg), "ab", buffering=0)  # noqa: SIM115 - unbuffered: nothing held back

    def append(self, line: str) -> int:
        data = (line + "\n").encode("utf-8")
        with self.lock:
            if self.count >= SEGMENT_RECORDS:  # a new segment before the row, so a failed open costs nothing
                new = self._open(self.seg + 1)
                self.file.close()
                self.file, self.seg, self.count = new, self.seg + 1, 0
            append_whole(self.file.fileno(), data, self.fsync)
            seg = self.seg
            self.pending[seg] = self.pending.get(seg, 0) + 1
            self.count += 1
            return seg

    def committed(self, segs: list[int]) -> None:
        with self.lock:
            for seg in segs:
                self.pending[seg] -= 1
            for seg, n in list(self.pending.items()):
                if n == 0 and seg != self.seg:
                    del self.pending[seg]
                    self._path(seg).unlink(missing_ok=True)

    def close(self, delete_current: bool) -> None:
        with self.lock:
            self.file.close()
            if delete_current and not self.pending.get(self.seg):
                self._path(self.seg).unlink(missing_ok=True)


class RequestLogConfig(BaseModel):
    enabled: bool = Field(
        True, description="Turn the request log off (benchmarks only: nothing is recorded)."
    )
    queue_size: int = Field(10_000, description="In-memory rows before spilling to disk.")
    batch_size: int = Field(512, description="Rows per DuckDB insert.")
    flush_interval_s: float = Field(0.25, description="Longest time a row waits in the queue.")
    fsync: bool = Field(
        False, description="fsync the journal per row (power-loss safety; kill -9 is safe without)."
    )


class RequestLogWriter:
    """Implements serving.records.RecordSink. ``submit`` never touches DuckDB."""

    BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 5.0)  # between retries of a failed insert (the last one repeats)
    GIVE_UP_AFTER = 5  # failed tries of a batch for a reason other than a full disk (left for replay)

    def __init__(self, db: Database, journal_dir: Path, config: RequestLogConfig | None = None):
        self.db = db
        self.journal_dir = journal_dir
        self.config = cfg = config or RequestLogConfig()
        self.batch_size, self.flush_interval_s, self.fsync = cfg.batch_size, cfg.flush_interval_s, cfg.fsync
        queue_size = cfg.queue_size
        self.queue: queue.Queue[tuple[int, dict] | threading.Event | None] = queue.Queue(maxsize=queue_size)
        self.spill_path = journal_dir / "spill.jsonl"
        self.spill_lock = threading.Lock()
        self.spilled = 0
        self.written = 0
        self.unjournaled = 0  # rows submit() refused because the journal could not be written
        self.insert_failures = 0  # DuckDB inserts that failed (their rows kept and retried)
        self.spill_failures = 0  # rows the spill file could not take (journaled: read back from there)
        # what waits for DuckDB outside the queue and the spill: a batch whose insert failed, and rows
        # (per journal segment) that neither the queue nor the spill file could take
        self._held: list[tuple[int, dict]] = []
        self._held_tries = 0
        self._orphans: dict[int, int] = {}
        self._spill_left = False  # a drained spill file is still to insert (its insert failed)
        self._failing = False  # the last write to DuckDB failed (logged once, until one goes through)
        self._spill_failing = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._journal: _Journal | None = None
        self.enabled = cfg.enabled

    # ---- lifecycle ------------------------------------------------------------------------------------
    def replay(self) -> int:
        """Insert whatever a previous process journaled or spilled but did not commit."""
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        files = sorted(self.journal_dir.glob("seg-*.jsonl")) + sorted(self.journal_dir.glob("spill*.jsonl"))
        total = 0
        for path in files:
            rows = [row for _, row in _read_rows(path, spill=path.name.startswith("spill"))]
            for i in range(0, len(rows), self.batch_size):
                insert_rows(self.db, rows[i : i + self.batch_size])
            total += len(rows)
            path.unlink()
        return total

    def start(self) -> int:
        replayed = self.replay()
        self._journal = _Journal(self.journal_dir, self.fsync)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
        self._thread.start()
        return replayed

    def close(self, timeout: float = 30.0) -> None:
        """Flush everything and stop the writer (on SIGTERM/shutdown). Rows DuckDB still refuses (a full
        disk) stay in the journal, and the next start replays them."""
        if self._thread is None:
            return
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # a full queue: the writer stops once it has emptied it
            self.queue.put_nowait(None)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._catch_up()
        if self._journal is not None:
            self._journal.close(delete_current=True)
        self._thread = None

    # ---- request path ------------------------------------------------------------------------------------
    def submit(self, record: RequestRecord) -> None:
        if not self.enabled:
            return
        line = record.model_dump_json()
        assert self._journal is not None, "writer not started"
        try:
            seg = self._journal.append(line)
        except OSError as e:
            # a full disk: this row is not recorded, and the caller must not answer as if it were
            self.unjournaled += 1
            msg = (
                f"request {record.request_id} not recorded: the request-log journal in {self.journal_dir}: "
                f"{_reason(e)}"
            )
            log.error(msg)
            raise RecordError(msg) from e
        try:
            self.queue.put_nowait((seg, record.model_dump()))
        except queue.Full:
            self._spill(seg, line, record.request_id)

    def _spill(self, seg: int, line: str, request_id: str) -> None:
        data = (json.dumps({"seg": seg, "line": line}) + "\n").encode("utf-8")
        with self.spill_lock:
            try:
                fd = os.open(self.spill_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    append_whole(fd, data)
                finally:
                    os.close(fd)
            except OSError as e:
                # the row is in the journal already (the request is answered as recorded): it waits there
                # and is read back once DuckDB writes again; counted, and logged once per failing spell
                self.spill_failures += 1
                self._orphans[seg] = self._orphans.get(seg, 0) + 1
                if not self._spill_failing:
                    self._spill_failing = True
                    log.error(
                        "request log: the queue is full and the spill file %s cannot take request %s (%s); "
                        "it and later such rows wait in the journal until they can be written "
                        "(see keel_requestlog_spill_failures)",
                        self.spill_path,
                        request_id,
                        _reason(e),
                    )
                return
            self._spill_failing = False
            self.spilled += 1

    # ---- writer thread ---------------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every record submitted so far is in DuckDB (for readers that need read-your-writes).
        False when that did not happen within ``timeout`` (DuckDB refuses writes: its disk is full)."""
        if self._thread is None:
            return True
        marker = threading.Event()
        try:
            self.queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.wait(timeout)

    def _run(self) -> None:
        markers: list[threading.Event] = []
        stop = False
        tries = 0
        while True:
            if self._behind() and not self._catch_up():
                # DuckDB refuses writes: nothing newer is taken (the queue fills, then spills) until the
                # held rows go in; a flush waits; a stop leaves them in the journal for the next start
                if stop or self._stopping.is_set():
                    return
                self._stopping.wait(self.BACKOFF_S[min(tries, len(self.BACKOFF_S) - 1)])
                tries += 1
                continue
            tries = 0
            for m in markers:
                m.set()
            markers.clear()
            if stop:
                return
            batch, more, stop = self._take()
            markers += more
            if batch and not self._commit(batch):  # held: the first retry after the first back-off
                self._stopping.wait(self.BACKOFF_S[0])
                tries = 1

    def _take(self) -> tuple[list[tuple[int, dict]], list[threading.Event], bool]:
        """The next batch from the queue (up to batch_size rows or flush_interval_s), with any flush
        markers met and whether the stop sentinel came."""
        batch: list[tuple[int, dict]] = []
        markers: list[threading.Event] = []
        try:
            item = self.queue.get(timeout=self.flush_interval_s)
        except queue.Empty:
            return batch, markers, self._stopping.is_set()
        deadline = time.monotonic() + self.flush_interval_s
        while True:
            if item is None:
                return batch, markers, True
            if isinstance(item, threading.Event):
                markers.append(item)
                return batch, markers, False
            batch.append(item)
            if len(batch) >= self.batch_size:
                return batch, markers, False
            remaining = deadline - time.monotonic()
            try:
                item = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
            except queue.Empty:
                return batch, markers, False

    def _behind(self) -> bool:
        """Rows wait outside the queue: a held batch, a spill, rows only the journal has."""
        return bool(self._held or self._orphans or self._spill_left or self.spill_path.exists())

    def _insert(self, rows: list[dict]) -> BaseException | None:
        """Insert ``rows`` in batches; the error if DuckDB refused (logged once per failing spell)."""
        try:
            for i in range(0, len(rows), self.batch_size):
                insert_rows(self.db, rows[i : i + self.batch_size])
        except Exception as e:
            self.insert_failures += 1
            if not self._failing:
                self._failing = True
                log.error(
                    "request log: a DuckDB insert into %s failed (%s); the rows are kept and retried, "
                    "nothing newer is written until they go in (see keel_requestlog_insert_failures)",
                    self.db.path,
                    _reason(e),
                )
            return e
        if self._failing:
            self._failing = False
            log.info("request log: DuckDB writes go through again")
        return None

    def _commit(self, batch: list[tuple[int, dict]]) -> bool:
        error = self._insert([rec for _, rec in batch])
        if error is not None:
            self._held, self._held_tries = batch, 1
            return False
        self._done(batch)
        return True

    def _done(self, items: list[tuple[int, dict]]) -> None:
        self.written += len(items)
        assert self._journal is not None
        self._journal.committed([seg for seg, _ in items])

    def _catch_up(self) -> bool:
        """Write what waits outside the queue (held batch, spill, journal-only rows); False while DuckDB
        still refuses."""
        if self._held:
            error = self._insert([rec for _, rec in self._held])
            if error is not None:
                self._held_tries += 1
                if out_of_space(error) or self._held_tries < self.GIVE_UP_AFTER:
                    return False
                # not a full disk and not passing: the rows stay in the journal for the next start
                log.error(
                    "request log: giving up on %d rows after %d failed inserts (%s); they stay in the "
                    "journal %s and are replayed at the next start",
                    len(self._held),
                    self._held_tries,
                    _reason(error),
                    self.journal_dir,
                )
            else:
                self._done(self._held)
            self._held, self._held_tries = [], 0
        return self._drain_spill() and self._recover_orphans()

    def _drain_spill(self) -> bool:
        """Insert every spill file; one whose insert fails stays, and is tried again (then at replay)."""
        with self.spill_lock:
            if self.spill_path.exists():
                os.replace(self.spill_path, self.spill_path.with_name(f"spill-{time.time_ns()}.jsonl"))
        for work in sorted(self.journal_dir.glob("spill-*.jsonl")):
            items = _read_rows(work, spill=True)
            if self._insert([rec for _, rec in items]) is not None:
                self._spill_left = True
                return False
            self._done(items)  # once per row: a file is counted only when all of it went in
            work.unlink()
        self._spill_left = False
        return True

    def _recover_orphans(self) -> bool:
        """Rows only the journal holds (the spill file refused them): read their segments back."""
        with self.spill_lock:
            orphans, self._orphans = self._orphans, {}
        for seg, n in sorted(orphans.items()):
            assert self._journal is not None
            rows = [row for _, row in _read_rows(self._journal._path(seg), spill=False)]
            if self._insert(rows) is not None:  # INSERT OR IGNORE: rows already in cost nothing
                with self.spill_lock:
                    for s, k in orphans.items():
                        if s >= seg:
                            self._orphans[s] = self._orphans.get(s, 0) + k
                return False
            self.written += n
            self._journal.committed([seg] * n)
        return True

    def stats(self) -> dict[str, int]:
        with self.spill_lock:
            orphans = sum(self._orphans.values())
        return {
            "queued": self.queue.qsize(),
            "written": self.written,
            "spilled": self.spilled,
            "unjournaled": self.unjournaled,
            "insert_failures": self.insert_failures,
            "spill_failures": self.spill_failures,
            "held": len(self._held) + orphans,
        }


# Reads of the request log: one column list, derived from the record model the writer stores.
# (the model's fields, then its derived flat columns: route, route_confidence, retrieved, retrieval_ms)
REQUEST_COLUMNS: tuple[str, ...] = (*RequestRecord.model_fields, *FLAT_ROUTE_COLUMNS)


def select_requests(
    db: Database,
    where: str = "TRUE",
    params: list | None = None,
    columns: tuple[str, ...] | list[str] = REQUEST_COLUMNS,
    order: str = "created_at DESC",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Request rows as dicts (JSON columns decoded, timestamps ISO). ``columns`` must be record fields."""
    from keel.store.rows import as_dicts

    unknown = set(columns) - set(REQUEST_COLUMNS)
    if unknown:
        raise ValueError(f"not request-row columns: {sorted(unknown)}")
    sql = f"SELECT {', '.join(columns)} FROM requests WHERE {where} ORDER BY {order}"
    args = list(params or [])
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return as_dicts(db.cursor().execute(sql, args), JSON_COLUMNS)


def list_requests(db: Database, ids: list[str] | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Rows newest first, or exactly the given request ids."""
    if ids:
        marks = ",".join("?" * len(ids))
        return select_requests(db, f"request_id IN ({marks})", list(ids))
    return select_requests(db, limit=limit)


def count_requests(db: Database) -> int:
    return db.fetchall("SELECT count(*) FROM requests")[0][0]


def answered_since(db: Database, after: Any, limit: int = 1000) -> list[dict[str, Any]]:
    """Chat requests an engine answered without error after ``after`` (a timestamp or None), oldest first.
    ``response_text`` is the model's own text where logged (no gateway additions)."""
    rows = select_requests(
        db,
        "created_at > coalesce(?::TIMESTAMPTZ, '1970-01-01'::TIMESTAMPTZ) "
        "AND endpoint = '/v1/chat/completions' AND error IS NULL AND coalesce(status_code, 200) < 400 "
        "AND coalesce(response_text, '') <> '' AND regenerate_of IS NULL "
        "AND checkpoint_version IS NOT NULL",  # the engine answered (not a canned reply)
        [after],
        (
            "request_id",
            "created_at",
            "messages",
            "engine_messages",
            "params",
            "completion_text",
            "response_text",
            "route",
            "retrieved",
            "checkpoint_version",
        ),
        order="created_at",
        limit=limit,
    )
    for r in rows:
        r["response_text"] = r.pop("completion_text") or r["response_text"]
    return rows
