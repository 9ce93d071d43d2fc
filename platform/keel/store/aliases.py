"""Aliases over checkpoint versions: ``champion`` is the serving one. Moves are appended, never rewritten."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from keel.store.db import Database
from keel.store.rows import as_dicts

CHAMPION = "champion"


def get(db: Database, alias: str = CHAMPION) -> str | None:
    """The version the alias names. ``champion`` starts at what the registry marks serving (e.g. ``base``)."""
    rows = db.fetchall("SELECT version FROM aliases WHERE alias = ?", [alias])
    if rows:
        return rows[0][0]
    if alias != CHAMPION:
        return None
    serving = db.fetchall(
        "SELECT version FROM checkpoints WHERE status = 'serving' ORDER BY promoted_at DESC NULLS LAST LIMIT 1"
    )
    if not serving:
        return None
    move(db, CHAMPION, serving[0][0], "initial", by="keel")
    return serving[0][0]


def move(
    db: Database,
    alias: str,
    version: str,
    kind: str,
    by: str | None = None,
    reason: str | None = None,
    swap_id: str | None = None,
) -> None:
    """Point ``alias`` at ``version`` and append the move to its history (one transaction)."""
    now = datetime.now(UTC)
    with db.lock:
        cur = db.cursor()
        cur.execute("BEGIN")
        try:
            old = cur.execute("SELECT version FROM aliases WHERE alias = ?", [alias]).fetchone()
            cur.execute(
                "INSERT INTO aliases (alias, version, updated_at, updated_by) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, "
                "updated_by = excluded.updated_by",
                [alias, version, now, by],
            )
            cur.execute(
                "INSERT INTO alias_history (move_id, alias, from_version, to_version, kind, swap_id, reason, "
                "by_whom, moved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    "move-" + uuid.uuid4().hex[:16],
                    alias,
                    old[0] if old else None,
                    version,
                    kind,
                    swap_id,
                    reason,
                    by,
                    now,
                ],
            )
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise


def history(
    db: Database, alias: str = CHAMPION, version: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Moves of ``alias``, newest first; with ``version``, only those to or from it."""
    where, params = "alias = ?", [alias]
    if version is not None:
        where += " AND (to_version = ? OR from_version = ?)"
        params += [version, version]
    cur = db.cursor().execute(
        f"SELECT * FROM alias_history WHERE {where} ORDER BY moved_at DESC, move_id LIMIT ?", [*params, limit]
    )
    return as_dicts(cur, ())


def list_all(db: Database) -> list[dict[str, Any]]:
    get(db, CHAMPION)  # make sure the champion exists once anything serves
    return as_dicts(db.cursor().execute("SELECT * FROM aliases ORDER BY alias"), ())
