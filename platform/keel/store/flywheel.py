"""Reads of the flywheel tables for the admin API: feedback, pairs and annotations."""

from __future__ import annotations

from typing import Any

from keel.store.db import Database
from keel.store.rows import as_dicts

JSON_COLS = ("prompt", "retrieved", "provenance", "messages", "stats", "params")


def list_feedback(db: Database, request_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    where, params = ("WHERE request_id = ?", [request_id]) if request_id else ("", [])
    cur = db.cursor().execute(f"SELECT * FROM feedback {where} ORDER BY created_at LIMIT ?", [*params, limit])
    return as_dicts(cur, JSON_COLS)


def list_pairs(db: Database, status: list[str] | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    where, params = "", []
    if status:
        where = f"WHERE status IN ({','.join('?' * len(status))})"
        params = list(status)
    cur = db.cursor().execute(
        f"SELECT * EXCLUDE (lease_token) FROM pairs {where} ORDER BY created_at LIMIT ?", [*params, limit]
    )
    return as_dicts(cur, JSON_COLS)


def list_annotations(db: Database, limit: int = 1000) -> list[dict[str, Any]]:
    cur = db.cursor().execute(
        "SELECT * EXCLUDE (lease_token) FROM annotations ORDER BY created_at LIMIT ?", [limit]
    )
    return as_dicts(cur, JSON_COLS)
