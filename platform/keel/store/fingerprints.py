"""The fingerprints table: one probe fingerprint per checkpoint version and engine dtype."""

from __future__ import annotations

from keel.store.db import Database
from serving.engine.fingerprint import Fingerprint


def get(db: Database, version: str, dtype: str) -> Fingerprint | None:
    rows = db.fetchall(
        "SELECT fingerprint FROM fingerprints WHERE version = ? AND dtype = ?", [version, dtype]
    )
    return Fingerprint.model_validate_json(rows[0][0]) if rows else None


def put(db: Database, version: str, fp: Fingerprint) -> None:
    db.execute(
        "INSERT INTO fingerprints (version, dtype, fingerprint) VALUES (?, ?, ?) "
        "ON CONFLICT (version, dtype) DO UPDATE SET fingerprint = excluded.fingerprint, computed_at = now()",
        [version, fp.dtype, fp.model_dump_json()],
    )
