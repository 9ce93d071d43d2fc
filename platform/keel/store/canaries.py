"""The ``canaries`` table, and the per-arm request and feedback reads a canary decides on."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from keel.store.db import Database
from keel.store.requestlog import select_requests
from keel.store.rows import as_dicts

CANARY_COLUMNS = (
    "request_id", "arm", "route", "status_code", "error", "completion_text", "response_text", "latency_ms",
)  # fmt: skip


def served_since(db: Database, since: datetime) -> int:
    """Requests an engine answered since ``since`` (any arm): the live traffic a canary could draw on."""
    [(n,)] = db.fetchall(
        "SELECT count(*) FROM requests WHERE created_at >= ? AND checkpoint_version IS NOT NULL", [since]
    )
    return int(n)


def start(
    db: Database, version: str, champion: str | None, share: float, by: str, cycle_id: str | None
) -> str:
    canary_id = "canary-" + uuid.uuid4().hex[:12]
    db.execute(
        "INSERT INTO canaries (canary_id, version, champion, share, status, cycle_id, started_by, started_at) "
        "VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
        [canary_id, version, champion, share, cycle_id, by, datetime.now(UTC)],
    )
    return canary_id


def update(db: Database, canary_id: str, figures: dict[str, Any]) -> None:
    db.execute("UPDATE canaries SET figures = ? WHERE canary_id = ?", [json.dumps(figures), canary_id])


def finish(
    db: Database, canary_id: str, status: str, reason: str, figures: dict[str, Any] | None = None
) -> None:
    db.execute(
        "UPDATE canaries SET status = ?, reason = ?, figures = coalesce(?, figures), finished_at = ? "
        "WHERE canary_id = ? AND status = 'running'",
        [status, reason, json.dumps(figures) if figures else None, datetime.now(UTC), canary_id],
    )


def promotion_refused(db: Database, canary_id: str, reason: str) -> None:
    """The canary decided to promote but the promotion was refused (a candidate forced into the canary is
    not forced through its gates, a swap failed): the row must not go on saying `promoted`."""
    db.execute(
        "UPDATE canaries SET status = 'failed', reason = ? WHERE canary_id = ? AND status = 'promoted'",
        [reason, canary_id],
    )


def interrupt_running(db: Database) -> None:
    """A canary a dead process left running cannot decide: say so (the champion serves alone again)."""
    db.execute(
        "UPDATE canaries SET status = 'interrupted', finished_at = now(), reason = 'the platform stopped' "
        "WHERE status = 'running'"
    )


def get(db: Database, canary_id: str) -> dict[str, Any] | None:
    rows = as_dicts(
        db.cursor().execute("SELECT * FROM canaries WHERE canary_id = ?", [canary_id]), ("figures",)
    )
    return rows[0] if rows else None


def list_canaries(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    return as_dicts(
        db.cursor().execute("SELECT * FROM canaries ORDER BY started_at DESC LIMIT ?", [limit]), ("figures",)
    )


def for_version(db: Database, version: str) -> list[dict[str, Any]]:
    return as_dicts(
        db.cursor().execute("SELECT * FROM canaries WHERE version = ? ORDER BY started_at", [version]),
        ("figures",),
    )


def arm_rows(db: Database, since: datetime, versions: tuple[str, str]) -> list[dict[str, Any]]:
    """Requests either arm answered since the canary began, each with its feedback signals."""
    rows = select_requests(
        db,
        "created_at >= ? AND arm IS NOT NULL AND checkpoint_version IN (?, ?)",
        [since, *versions],
        CANARY_COLUMNS,
        order="created_at",
    )
    if not rows:
        return rows
    ids = [r["request_id"] for r in rows]
    marks = ",".join("?" * len(ids))
    kinds: dict[str, set[str]] = {}
    scores: dict[str, list[float]] = {}
    for rid, kind, rating, score in db.fetchall(
        f"SELECT request_id, kind, rating, score FROM feedback WHERE request_id IN ({marks})", ids
    ):
        if kind == "thumbs" and (rating or 0) < 0:
            kinds.setdefault(rid, set()).add("thumbs_down")
        elif kind in ("regenerate", "edit"):
            kinds.setdefault(rid, set()).add("regenerated" if kind == "regenerate" else "edited")
        elif kind == "score" and score is not None:
            scores.setdefault(rid, []).append(float(score))
    for (rid,) in db.fetchall(f"SELECT regenerate_of FROM requests WHERE regenerate_of IN ({marks})", ids):
        kinds.setdefault(rid, set()).add("regenerated")
    for r in rows:
        for k in ("thumbs_down", "regenerated", "edited"):
            r[k] = k in kinds.get(r["request_id"], set())
        # graders that scored one answer (a score is deduplicated per key): their mean is its judge score
        got = scores.get(r["request_id"])
        r["judge"] = sum(got) / len(got) if got else None
    return rows
