"""The ``watches`` table (one row per watch after promotion) and the request/feedback reads a watch compares."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from keel.store.db import Database
from keel.store.requestlog import select_requests
from keel.store.rows import as_dicts

# what the watch's signals read of a request row
WATCH_COLUMNS = (
    "request_id",
    "route",
    "status_code",
    "error",
    "completion_text",
    "response_text",
    "latency_ms",
)


def interrupt_running(db: Database, reason: str = "platform restarted") -> None:
    """A watch a dead process left running cannot finish: say so."""
    db.execute(
        "UPDATE watches SET status = 'interrupted', finished_at = now(), reason = ? WHERE status = 'running'",
        [reason],
    )


def start(db: Database, version: str, previous: str, swap_id: str | None, started: datetime) -> str:
    watch_id = "watch-" + uuid.uuid4().hex[:12]
    db.execute(
        "INSERT INTO watches (watch_id, version, previous, swap_id, status, started_at) "
        "VALUES (?, ?, ?, ?, 'running', ?)",
        [watch_id, version, previous, swap_id, started],
    )
    return watch_id


def finish(
    db: Database,
    watch_id: str,
    status: str,
    reason: str,
    verdict: dict[str, Any] | None = None,
    rollback_swap: str | None = None,
) -> None:
    db.execute(
        "UPDATE watches SET status = ?, finished_at = ?, reason = ?, verdict = ?, rollback_swap = ? "
        "WHERE watch_id = ? AND status = 'running'",
        [
            status,
            datetime.now(UTC),
            reason,
            json.dumps(verdict) if verdict else None,
            rollback_swap,
            watch_id,
        ],
    )


def list_watches(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    return as_dicts(
        db.cursor().execute("SELECT * FROM watches ORDER BY started_at DESC LIMIT ?", [limit]), ("verdict",)
    )


def version_requests(
    db: Database, version: str, since: datetime, until: datetime | None = None
) -> list[dict[str, Any]]:
    """The rows ``version`` served in [since, until)."""
    where, params = "checkpoint_version = ? AND created_at >= ?", [version, since]
    if until is not None:
        where += " AND created_at < ?"
        params.append(until)
    return select_requests(db, where, params, WATCH_COLUMNS)


def down_and_regenerated(db: Database, ids: list[str]) -> tuple[set[str], set[str]]:
    """Of ``ids``: those whose latest thumbs is down, and those regenerated (feedback or a later request)."""
    if not ids:
        return set(), set()
    with db.lock:
        cur = db.cursor()
        cur.execute("CREATE OR REPLACE TEMP TABLE _watch_ids (id VARCHAR)")
        cur.executemany("INSERT INTO _watch_ids VALUES (?)", [(i,) for i in ids])
        down = {
            r[0]
            for r in cur.execute(
                "SELECT request_id FROM (SELECT request_id, rating, row_number() OVER (PARTITION BY request_id "
                "ORDER BY created_at DESC) AS n FROM feedback WHERE kind = 'thumbs' AND request_id IN "
                "(SELECT id FROM _watch_ids)) WHERE n = 1 AND rating < 0"
            ).fetchall()
        }
        regen = {
            r[0]
            for r in cur.execute(
                "SELECT request_id FROM feedback WHERE kind = 'regenerate' AND request_id IN (SELECT id FROM _watch_ids) "
                "UNION SELECT regenerate_of FROM requests WHERE regenerate_of IN (SELECT id FROM _watch_ids)"
            ).fetchall()
        }
        cur.execute("DROP TABLE IF EXISTS _watch_ids")
    return down, regen
