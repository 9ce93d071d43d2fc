"""The flywheel tables: feedback, pairs, annotations, SFT and KTO examples, candidates and mining runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from keel.store.db import Database
from keel.store.requestlog import REQUEST_COLUMNS
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


def insert_candidate(
    db: Database,
    candidate_id: str,
    request_id: str,
    text: str,
    version: str | None,
    params: dict,
    latency_ms: float,
) -> None:
    """A second answer the candidate sampler generated for a logged request."""
    db.execute(
        "INSERT INTO candidates (candidate_id, request_id, response_text, checkpoint_version, params, latency_ms) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [candidate_id, request_id, text, version, json.dumps(params), latency_ms],
    )


# ---- mining: what a run reads and writes --------------------------------------------------------------
# the request-row fields mining reads (raw: timestamps as datetimes, JSON columns as stored text)
MINING_REQUEST_COLUMNS = (
    "request_id", "created_at", "key_id", "messages", "response_text", "route", "retrieved",
    "checkpoint_version", "status_code", "error", "regenerate_of", "meta", "engine_messages",
    "completion_text", "appended_text",
)  # fmt: skip
MINING_FEEDBACK_COLUMNS = (
    "feedback_id", "request_id", "key_id", "kind", "rating", "edited_text", "other_request_id", "preferred",
    "created_at",
)  # fmt: skip
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def mining_window(db: Database, since: datetime | None) -> tuple[list[dict], list[dict]]:
    """(requests, feedback) a mining run needs: everything touched by feedback or regeneration links made
    after ``since`` (None: all), plus every rated request (thumbs pairs compare across time)."""
    assert set(MINING_REQUEST_COLUMNS) <= set(REQUEST_COLUMNS)
    with db.lock:
        con = db.cursor()
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _mine_ids AS
               SELECT request_id AS id FROM feedback WHERE created_at > $since
               UNION SELECT other_request_id FROM feedback WHERE created_at > $since AND other_request_id IS NOT NULL
               UNION SELECT request_id FROM requests WHERE regenerate_of IS NOT NULL AND created_at > $since
               UNION SELECT regenerate_of FROM requests WHERE regenerate_of IS NOT NULL AND created_at > $since
               UNION SELECT request_id FROM feedback WHERE kind = 'thumbs'""",
            {"since": since or _EPOCH},
        )
        # neighbours through regeneration links, so a link made earlier still meets a rating made now
        con.execute(
            """INSERT INTO _mine_ids SELECT request_id FROM requests
               WHERE regenerate_of IN (SELECT id FROM _mine_ids)
               UNION SELECT regenerate_of FROM requests
               WHERE request_id IN (SELECT id FROM _mine_ids) AND regenerate_of IS NOT NULL"""
        )
        requests = _raw(
            con.execute(
                f"SELECT {', '.join(MINING_REQUEST_COLUMNS)} FROM requests "
                "WHERE request_id IN (SELECT DISTINCT id FROM _mine_ids)"
            )
        )
        feedback = _raw(
            con.execute(
                f"SELECT {', '.join(MINING_FEEDBACK_COLUMNS)} FROM feedback WHERE request_id IN "
                "(SELECT id FROM _mine_ids) OR other_request_id IN (SELECT id FROM _mine_ids)"
            )
        )
        con.execute("DROP TABLE IF EXISTS _mine_ids")
    return requests, feedback


def _raw(cur) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def last_mined_until(db: Database) -> datetime | None:
    return db.fetchall("SELECT max(until) FROM mining_runs")[0][0]


def mined_keys(db: Database) -> set[str]:
    """Every pair, SFT- and KTO-example key already stored (a run never stores one twice)."""
    keys = {r[0] for r in db.fetchall("SELECT pair_key FROM pairs")}
    keys |= {r[0] for r in db.fetchall("SELECT example_key FROM kto_examples")}
    return keys | {r[0] for r in db.fetchall("SELECT example_key FROM sft_examples")}


def stored_pairs(db: Database) -> list[tuple[str, Any, str, str]]:
    """(pair_key, prompt, chosen, rejected) of every stored pair, for near-duplicate checks."""
    return db.fetchall("SELECT pair_key, prompt, chosen, rejected FROM pairs")


def stored_sft(db: Database) -> list[tuple[str, Any]]:
    """(example_key, messages) of every stored SFT example."""
    return db.fetchall("SELECT example_key, messages FROM sft_examples")


def stored_kto(db: Database) -> list[tuple[str, Any, str, bool]]:
    """(example_key, prompt, completion, label) of every stored KTO example."""
    return db.fetchall("SELECT example_key, prompt, completion, label FROM kto_examples")


def insert_pairs(db: Database, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    pair_tbl = pa.Table.from_pylist(rows)  # noqa: F841 - DuckDB reads it by name
    with db.lock:
        db.cursor().execute("INSERT OR IGNORE INTO pairs BY NAME SELECT * FROM pair_tbl")


def record_mining_run(
    db: Database,
    run_id: str,
    since: datetime | None,
    until: datetime,
    stats: dict[str, Any],
    sft_rows: list[dict[str, Any]],
    kto_rows: list[dict[str, Any]] | None = None,
) -> None:
    """The run's SFT and KTO examples and its ``mining_runs`` row, in one lock."""
    with db.lock:
        c = db.cursor()
        if sft_rows:
            sft_tbl = pa.Table.from_pylist(sft_rows)  # noqa: F841 - DuckDB reads it by name
            c.execute("INSERT OR IGNORE INTO sft_examples BY NAME SELECT * FROM sft_tbl")
        if kto_rows:
            kto_tbl = pa.Table.from_pylist(kto_rows)  # noqa: F841 - DuckDB reads it by name
            c.execute("INSERT OR IGNORE INTO kto_examples BY NAME SELECT * FROM kto_tbl")
        c.execute(
            "INSERT INTO mining_runs (run_id, since, until, stats) VALUES (?, ?, ?, ?)",
            [run_id, since, until, json.dumps(stats)],
        )


# ---- export: what a snapshot reads ---------------------------------------------------------------------
def pairs_for_export(db: Database, statuses: list[str]) -> list[tuple]:
    """(pair_id, source, prompt, chosen, rejected, route, provenance, status, reviewed_at), the review's
    final sides where it changed them, oldest first."""
    marks = ",".join("?" * len(statuses))
    return db.fetchall(
        f"""SELECT pair_id, source, prompt, coalesce(final_chosen, chosen), coalesce(final_rejected, rejected),
                   route, provenance, status, reviewed_at FROM pairs WHERE status IN ({marks})
            ORDER BY created_at, pair_id""",
        statuses,
    )


def pairs_for_snapshot(db: Database) -> list[tuple]:
    """Like pairs_for_export over accepted and pending pairs, plus the trust policy's acceptance:
    (..., status, reviewed_at, auto_accepted_by). flywheel.trust decides which of them train."""
    return db.fetchall(
        """SELECT pair_id, source, prompt, coalesce(final_chosen, chosen), coalesce(final_rejected, rejected),
                  route, provenance, status, reviewed_at, auto_accepted_by FROM pairs
           WHERE status IN ('accepted', 'pending') ORDER BY created_at, pair_id"""
    )


def kto_for_export(db: Database) -> list[tuple]:
    """(example_id, source, prompt, completion, label, route, provenance) of each rated request's latest
    KTO example (a changed rating replaces the earlier one), oldest first."""
    return db.fetchall(
        """SELECT example_id, source, prompt, completion, label, route, provenance FROM kto_examples
           QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY created_at DESC, example_id DESC) = 1
           ORDER BY created_at, example_id"""
    )


def reviews_by_pair(db: Database) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for pid, who, decision, at in db.fetchall(
        "SELECT pair_id, annotator, decision, created_at FROM annotations WHERE decision <> 'skip' ORDER BY created_at"
    ):
        out.setdefault(pid, []).append({"annotator": who, "decision": decision, "at": at.isoformat()})
    return out


def sft_for_export(db: Database) -> list[tuple]:
    """(example_id, source, messages, route, provenance), oldest first."""
    return db.fetchall(
        "SELECT example_id, source, messages, route, provenance FROM sft_examples ORDER BY created_at, example_id"
    )


def record_export(db: Database, export_id: str, path: str, content_hash: str, stats: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO exports (export_id, path, hash, stats) VALUES (?, ?, ?, ?)",
        [export_id, path, content_hash, json.dumps(stats)],
    )
