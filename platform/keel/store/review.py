"""The review queue's tables: pending pairs handed out under leases, decisions stored with who and when.

A lease reserves one pair for one annotator for ``lease_s`` seconds; nobody else is offered it until
the decision arrives or the lease expires. A decision must carry the lease token it was given, so a
late submit (expired lease, another annotator took over) is refused instead of double-counted, and
a resubmit of the same token returns the stored decision.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import combinations
from typing import Any

from keel.errors import KeelError
from keel.store.db import Database

DECISIONS = ("accept", "swap", "reject", "edit", "skip")
# what each decision says about the pair: the proposed chosen (a) is better, the other (b), or neither
LABEL = {"accept": "a", "edit": "a", "swap": "b", "reject": "none"}


class LeaseError(KeelError):
    """The decision's lease is gone (expired or taken over); the page fetches a fresh item."""


@dataclass
class Filters:
    route: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def sql(self) -> tuple[str, list[Any]]:
        parts, params = [], []
        for col, v in (("route", self.route), ("source", self.source)):
            if v:
                parts.append(f"{col} = ?")
                params.append(v)
        if self.since:
            parts.append("created_at >= ?")
            params.append(self.since)
        if self.until:
            parts.append("created_at < ?")
            params.append(self.until)
        return "".join(f" AND {p}" for p in parts), params


def _now() -> datetime:
    return datetime.now(UTC)


class ReviewQueue:
    def __init__(self, db: Database, lease_s: float = 300.0):
        self.db = db
        self.lease_s = lease_s

    def next_item(self, key_id: str, filters: Filters | None = None) -> dict[str, Any] | None:
        """Lease the oldest pending pair this annotator has not judged and nobody else holds; pairs that wait
        for a review come before those the trust policy already let into training."""
        where, params = (filters or Filters()).sql()
        now = _now()
        with self.db.lock:
            cur = self.db.cursor()
            # one item at a time per annotator: asking again re-picks (the same item if it still fits)
            cur.execute(
                "UPDATE pairs SET lease_key_id = NULL, lease_token = NULL, lease_expires_at = NULL "
                "WHERE lease_key_id = ? AND status = 'pending'",
                [key_id],
            )
            row = cur.execute(
                f"""SELECT p.pair_id FROM pairs p
                    WHERE p.status = 'pending'
                      AND (p.lease_expires_at IS NULL OR p.lease_expires_at < ?)
                      AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.pair_id = p.pair_id AND a.key_id = ?)
                      {where}
                    ORDER BY p.auto_accepted_by IS NOT NULL, p.created_at, p.pair_id LIMIT 1""",
                [now, key_id, *params],
            ).fetchone()
            if row is None:
                return None
            token = secrets.token_urlsafe(16)
            expires = now + timedelta(seconds=self.lease_s)
            cur.execute(
                "UPDATE pairs SET lease_key_id = ?, lease_token = ?, lease_expires_at = ? WHERE pair_id = ?",
                [key_id, token, expires, row[0]],
            )
        item = self.get(row[0])
        item.update(lease_token=token, lease_expires_at=expires.isoformat())
        return item

    def get(self, pair_id: str) -> dict[str, Any]:
        cur = self.db.cursor().execute(
            """SELECT pair_id, source, prompt, chosen, rejected, route, retrieved, provenance, status,
                      required_reviews, created_at, auto_accepted_by FROM pairs WHERE pair_id = ?""",
            [pair_id],
        )
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
        if row is None:
            raise KeyError(pair_id)
        item = dict(zip(names, row, strict=True))
        for k in ("prompt", "retrieved", "provenance"):
            item[k] = json.loads(item[k]) if isinstance(item[k], str) else item[k]
        item["created_at"] = item["created_at"].isoformat()
        return item

    def decide(
        self,
        key_id: str,
        annotator: str,
        pair_id: str,
        token: str,
        decision: str,
        edited_text: str | None = None,
    ) -> dict[str, Any]:
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
        if decision == "edit" and not (edited_text or "").strip():
            raise ValueError("an edit needs the edited answer")
        with self.db.lock:
            cur = self.db.cursor()
            done = cur.execute(
                "SELECT annotation_id, decision FROM annotations WHERE lease_token = ? AND key_id = ?",
                [token, key_id],
            ).fetchone()
            if done is not None:  # the same submit again (a retry, a double key press)
                return {
                    "annotation_id": done[0],
                    "decision": done[1],
                    "duplicate": True,
                    **self._status(pair_id),
                }
            held = cur.execute(
                "SELECT lease_key_id, lease_token, lease_expires_at, status FROM pairs WHERE pair_id = ?",
                [pair_id],
            ).fetchone()
            if held is None:
                raise KeyError(pair_id)
            lk, lt, exp, status = held
            if status != "pending" or lk != key_id or lt != token or exp is None or exp < _now():
                raise LeaseError("this item's lease has expired or moved to someone else; load the next item")
            aid = "ann-" + uuid.uuid4().hex[:16]
            cur.execute(
                """INSERT INTO annotations (annotation_id, pair_id, key_id, annotator, decision, edited_text,
                   lease_token) VALUES (?, ?, ?, ?, ?, ?, ?)""",
                [
                    aid,
                    pair_id,
                    key_id,
                    annotator,
                    decision,
                    edited_text if decision == "edit" else None,
                    token,
                ],
            )
            cur.execute(
                "UPDATE pairs SET lease_key_id = NULL, lease_token = NULL, lease_expires_at = NULL WHERE pair_id = ?",
                [pair_id],
            )
            if decision != "skip":
                self._maybe_finalise(cur, pair_id)
        return {"annotation_id": aid, "decision": decision, "duplicate": False, **self._status(pair_id)}

    def _status(self, pair_id: str) -> dict[str, Any]:
        row = self.db.fetchall("SELECT status FROM pairs WHERE pair_id = ?", [pair_id])
        return {"pair_id": pair_id, "status": row[0][0] if row else None}

    @staticmethod
    def _maybe_finalise(cur, pair_id: str) -> None:
        chosen, rejected, required = cur.execute(
            "SELECT chosen, rejected, required_reviews FROM pairs WHERE pair_id = ?", [pair_id]
        ).fetchone()
        votes = cur.execute(
            "SELECT decision, edited_text FROM annotations WHERE pair_id = ? AND decision <> 'skip' ORDER BY created_at",
            [pair_id],
        ).fetchall()
        if len(votes) < required:
            return
        counts = Counter(LABEL[d] for d, _ in votes)
        (top, n), *rest = counts.most_common()
        if rest and rest[0][1] == n:
            status, fc, fr = "disputed", None, None  # a tie: not exported until someone settles it
        elif top == "none":
            status, fc, fr = "rejected", None, None
        elif top == "b":
            status, fc, fr = "accepted", rejected, chosen
        else:
            edits = [t for d, t in votes if d == "edit" and t]
            status, fc, fr = "accepted", edits[-1] if edits else chosen, rejected
        cur.execute(
            "UPDATE pairs SET status = ?, final_chosen = ?, final_rejected = ?, reviewed_at = now() WHERE pair_id = ?",
            [status, fc, fr, pair_id],
        )

    def progress(self, key_id: str) -> dict[str, Any]:
        cur = self.db.cursor()
        by_status = dict(cur.execute("SELECT status, count(*) FROM pairs GROUP BY status").fetchall())
        mine = cur.execute(
            "SELECT count(*) FROM annotations WHERE key_id = ? AND decision <> 'skip'", [key_id]
        ).fetchone()[0]
        facets = {
            col: [
                r[0]
                for r in cur.execute(
                    f"SELECT DISTINCT {col} FROM pairs WHERE {col} IS NOT NULL ORDER BY 1"
                ).fetchall()
            ]
            for col in ("route", "source")
        }
        return {
            "pending": by_status.get("pending", 0),
            "reviewed": sum(v for k, v in by_status.items() if k != "pending"),
            "by_status": by_status,
            "mine": mine,
            "facets": facets,
            "agreement": self.agreement(),
        }

    def agreement(self) -> dict[str, Any]:
        """Over items judged by two or more annotators: observed pairwise agreement and Cohen's kappa."""
        rows = self.db.fetchall(
            "SELECT pair_id, key_id, decision FROM annotations WHERE decision <> 'skip' ORDER BY created_at"
        )
        by_item: dict[str, dict[str, str]] = {}
        for pid, key, decision in rows:
            by_item.setdefault(pid, {})[key] = LABEL[decision]
        return agreement_stats([list(v.values()) for v in by_item.values() if len(v) >= 2])


def agreement_stats(items: list[list[str]]) -> dict[str, Any]:
    pairs = [(a, b) for labels in items for a, b in combinations(labels, 2)]
    if not pairs:
        return {"items": 0, "pairs": 0, "agreement": None, "kappa": None}
    observed = sum(a == b for a, b in pairs) / len(pairs)
    marg = Counter(x for ab in pairs for x in ab)
    total = sum(marg.values())
    expected = sum((c / total) ** 2 for c in marg.values())
    kappa = 1.0 if expected >= 1.0 else (observed - expected) / (1.0 - expected)
    return {
        "items": len(items),
        "pairs": len(pairs),
        "agreement": round(observed, 4),
        "kappa": round(kappa, 4),
    }
