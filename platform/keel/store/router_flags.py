"""Route flags: feedback rows of kind `route` joined to the request they judge (the message and its route)."""

from __future__ import annotations

import json
from typing import Any

from keel.store.db import Database
from serving.router.graph import last_user_text


def route_flags(db: Database) -> list[dict[str, Any]]:
    """One labelled example per flagged request (its latest flag wins), oldest first.

    `text` is the request's last user message (what the router classified); requests whose messages
    hold no user text are skipped.
    """
    rows = db.fetchall(
        """SELECT f.feedback_id, f.request_id, f.intent, f.key_id, f.created_at, r.messages, r.route
           FROM feedback f JOIN requests r ON r.request_id = f.request_id
           WHERE f.kind = 'route' AND f.intent IS NOT NULL
           ORDER BY f.created_at, f.feedback_id"""
    )
    latest: dict[str, dict[str, Any]] = {}
    for fid, rid, intent, key_id, created, messages, routed in rows:
        try:
            msgs = json.loads(messages) if isinstance(messages, str) else (messages or [])
        except ValueError:
            msgs = []
        text = last_user_text(msgs) if isinstance(msgs, list) else ""
        if not text:
            continue
        latest[rid] = {
            "feedback_id": fid,
            "request_id": rid,
            "text": text,
            "intent": intent,
            "routed": routed,
            "key_id": key_id,
            "created_at": created.isoformat() if created else None,
        }
    return sorted(latest.values(), key=lambda r: (r["created_at"] or "", r["feedback_id"]))


def request_flag(db: Database, request_id: str) -> dict[str, Any] | None:
    """The request's latest route flag (the one a refit uses): intent, who and when; None if unflagged."""
    row = db.fetchall(
        """SELECT f.intent, f.key_id, f.created_at FROM feedback f
           WHERE f.request_id = ? AND f.kind = 'route' AND f.intent IS NOT NULL
           ORDER BY f.created_at DESC, f.feedback_id DESC LIMIT 1""",
        [request_id],
    )
    if not row:
        return None
    intent, key_id, created = row[0]
    return {"intent": intent, "key_id": key_id, "created_at": created.isoformat() if created else None}
