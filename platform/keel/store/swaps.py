"""The ``swaps`` table: one row per promotion or rollback attempt (the swap history)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from keel.store.db import Database
from keel.store.rows import as_dicts


def start(
    db: Database, kind: str, frm: str | None, to: str, forced: bool, by: str, reason: str | None
) -> str:
    """A ``running`` row written before the swap begins, so a crash mid-swap leaves a trace."""
    swap_id = "swap_" + uuid.uuid4().hex[:12]
    db.execute(
        "INSERT INTO swaps (swap_id, kind, from_version, to_version, status, reason, forced, by_whom) "
        "VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
        [swap_id, kind, frm, to, reason, forced, by],
    )
    return swap_id


def finish(
    db: Database,
    swap_id: str,
    status: str,
    strategy: str | None,
    seconds: float | None,
    held: float | None,
    reason: str | None = None,
) -> None:
    db.execute(
        "UPDATE swaps SET status = ?, strategy = ?, seconds = ?, held_seconds = ?, finished_at = ?, "
        "reason = coalesce(?, reason) WHERE swap_id = ?",
        [status, strategy, seconds, held, datetime.now(UTC), reason, swap_id],
    )


def predecessor(db: Database, version: str | None) -> str | None:
    """The version a successful swap to ``version`` moved away from (the one to roll back to)."""
    rows = db.fetchall(
        "SELECT from_version FROM swaps WHERE status = 'succeeded' AND to_version = ? AND from_version IS NOT NULL "
        "ORDER BY finished_at DESC LIMIT 1",
        [version],
    )
    return rows[0][0] if rows else None


def history(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    return as_dicts(
        db.cursor().execute(
            "SELECT swap_id, kind, from_version, to_version, strategy, status, reason, forced, by_whom, started_at, "
            "finished_at, seconds, held_seconds FROM swaps ORDER BY started_at DESC LIMIT ?",
            [limit],
        ),
        (),
    )


def finished_stats(db: Database) -> list[tuple[str, str, str, float | None]]:
    """(kind, status, strategy, seconds) of every finished swap, for /metrics."""
    return db.fetchall(
        "SELECT kind, status, coalesce(strategy, ''), seconds FROM swaps WHERE status <> 'running'"
    )


def interrupt_running(db: Database) -> list[str]:
    """At platform start: a swap a dead process left ``running`` ended with it (what serves is what the
    registry names, which only moves once a swap succeeded)."""
    rows = db.fetchall("SELECT swap_id FROM swaps WHERE status = 'running'")
    if rows:
        db.execute(
            "UPDATE swaps SET status = 'interrupted', finished_at = ?, "
            "reason = concat_ws('; ', reason, 'interrupted: the platform stopped during the swap') "
            "WHERE status = 'running'",
            [datetime.now(UTC)],
        )
    return [r[0] for r in rows]
