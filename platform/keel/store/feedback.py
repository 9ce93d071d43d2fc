"""The feedback store: the DuckDB side of POST /v1/feedback (serving defines the protocol it needs)."""

from __future__ import annotations

import uuid
from datetime import datetime

from keel.store.db import Database
from serving.feedback.service import FeedbackRecord, RequestOwner


class DuckFeedbackStore:
    """Looks up request owners and stores feedback once per ``dedup_key``."""

    def __init__(self, db: Database, flush=None):
        self.db = db
        # Rows reach DuckDB through the log writer's queue; feedback may arrive before its request row.
        self.flush = flush

    def owner(self, request_id: str) -> RequestOwner | None:
        sql = "SELECT request_id, key_id FROM requests WHERE request_id = ?"
        rows = self.db.fetchall(sql, [request_id])
        if not rows and self.flush is not None and self.flush():
            rows = self.db.fetchall(sql, [request_id])
        return RequestOwner(*rows[0]) if rows else None

    def add(self, rec: FeedbackRecord) -> tuple[str, datetime, bool]:
        with self.db.lock:
            found = self.db.fetchall(
                "SELECT feedback_id, created_at FROM feedback WHERE dedup_key = ?", [rec.dedup_key]
            )
            if found:
                return found[0][0], found[0][1], True
            fid = "fb-" + uuid.uuid4().hex
            row = self.db.execute(
                """INSERT INTO feedback (feedback_id, request_id, key_id, kind, rating, comment, edited_text,
                   other_request_id, preferred, intent, score, dedup_key)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING created_at""",
                [fid, *rec.judgement(), rec.intent, rec.score, rec.dedup_key],
            ).fetchone()
            return fid, row[0], False
