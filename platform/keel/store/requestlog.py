"""Request log: an in-process queue drained by one batch writer thread into DuckDB.

Nothing is lost:
- every record is appended to a journal segment before the client gets its answer (survives kill -9);
- when the queue is full, records spill to a file instead of being dropped;
- a record the journal cannot take (a full disk) is refused with RecordError, counted (``unjournaled``)
  and logged: never silently dropped, and never half-written where a later append would complete it;
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
            fd = self.file.fileno()
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
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
            rows = []
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        if path.name.startswith("spill"):
                            line = json.loads(line)["line"]
                        rows.append(RequestRecord.model_validate_json(line).model_dump())
                    except ValueError:
                        log.warning("skipping a torn journal line in %s", path)  # a write cut by kill -9
            for i in range(0, len(rows), self.batch_size):
                insert_rows(self.db, rows[i : i + self.batch_size])
            total += len(rows)
            path.unlink()
        return total

    def start(self) -> int:
        replayed = self.replay()
        self._journal = _Journal(self.journal_dir, self.fsync)
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
        self._thread.start()
        return replayed

    def close(self, timeout: float = 30.0) -> None:
        """Flush everything and stop the writer (on SIGTERM/shutdown)."""
        if self._thread is None:
            return
        self.queue.put(None)
        self._thread.join(timeout)
        self._drain_spill()
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
            why = "no space left on device" if out_of_space(e) else (e.strerror or str(e))
            msg = f"request {record.request_id} not recorded: the request-log journal in {self.journal_dir}: {why}"
            log.error(msg)
            raise RecordError(msg) from e
        try:
            self.queue.put_nowait((seg, record.model_dump()))
        except queue.Full:
            with self.spill_lock:
                with open(self.spill_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"seg": seg, "line": line}) + "\n")
                self.spilled += 1

    # ---- writer thread ---------------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every record submitted so far is in DuckDB (for readers that need read-your-writes)."""
        if self._thread is None:
            return True
        marker = threading.Event()
        self.queue.put(marker, timeout=timeout)
        return marker.wait(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[tuple[int, dict]] = []
            markers: list[threading.Event] = []
            try:
                item = self.queue.get(timeout=self.flush_interval_s)
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                deadline = time.monotonic() + self.flush_interval_s
                while len(batch) < self.batch_size and not stop and not markers:
                    remaining = deadline - time.monotonic()
                    try:
                        item = (
                            self.queue.get(timeout=max(remaining, 0))
                            if remaining > 0
                            else self.queue.get_nowait()
                        )
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                    elif isinstance(item, threading.Event):
                        markers.append(item)
                        break
                    else:
                        batch.append(item)
            except queue.Empty:
                pass
            if batch:
                self._commit(batch)
            if markers:
                if self.spill_path.exists():
                    self._drain_spill()
                for m in markers:
                    m.set()
            if self.queue.empty() and self.spill_path.exists():
                self._drain_spill()

    def _commit(self, batch: list[tuple[int, dict]]) -> None:
        for attempt in range(5):
            try:
                insert_rows(self.db, [rec for _, rec in batch])
                break
            except Exception:  # keep the journal; retry, then leave it for replay at next start
                log.exception("request log insert failed (attempt %d)", attempt + 1)
                time.sleep(0.5 * (attempt + 1))
        else:
            return
        self.written += len(batch)
        assert self._journal is not None
        self._journal.committed([seg for seg, _ in batch])

    def _drain_spill(self) -> None:
        with self.spill_lock:
            if not self.spill_path.exists():
                return
            work = self.spill_path.with_name(f"spill-{time.time_ns()}.jsonl")
            os.replace(self.spill_path, work)
        items = []
        with open(work, encoding="utf-8") as f:
            for line in f:
                obj = json.loads(line)
                items.append((obj["seg"], RequestRecord.model_validate_json(obj["line"]).model_dump()))
        for i in range(0, len(items), self.batch_size):
            self._commit(items[i : i + self.batch_size])
        work.unlink()

    def stats(self) -> dict[str, int]:
        return {
            "queued": self.queue.qsize(),
            "written": self.written,
            "spilled": self.spilled,
            "unjournaled": self.unjournaled,
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
