"""The request log writer: batching, spill instead of drop, flush on close, journal replay."""

from __future__ import annotations

import json

from keel.store.db import Database
from keel.store.requestlog import RequestLogConfig, RequestLogWriter

from serving.records import RequestRecord


def rec(i: int) -> RequestRecord:
    return RequestRecord(
        request_id=f"r{i}", messages=[{"role": "user", "content": f"q{i}"}], response_text=f"a{i}"
    )


def count(db: Database) -> int:
    return db.fetchall("SELECT count(*) FROM requests")[0][0]


def test_rows_land_and_journal_is_cleared(tmp_path):
    db = Database(tmp_path / "k.duckdb")
    w = RequestLogWriter(db, tmp_path / "j", RequestLogConfig(batch_size=7, flush_interval_s=0.05))
    w.start()
    for i in range(50):
        w.submit(rec(i))
    w.close()
    assert count(db) == 50
    row = db.fetchall("SELECT messages, response_text FROM requests WHERE request_id = 'r3'")[0]
    assert json.loads(row[0]) == [{"role": "user", "content": "q3"}] and row[1] == "a3"
    assert not list((tmp_path / "j").glob("*.jsonl"))


def test_full_queue_spills_instead_of_dropping(tmp_path):
    db = Database(tmp_path / "k.duckdb")
    w = RequestLogWriter(
        db, tmp_path / "j", RequestLogConfig(queue_size=3, batch_size=2, flush_interval_s=0.01)
    )
    w.start()
    with db.lock:  # hold the writer at its first insert so the queue fills up
        for i in range(200):
            w.submit(rec(i))
        assert w.spilled > 0
    w.close()
    assert count(db) == 200


def test_journal_from_a_crashed_process_is_replayed_once(tmp_path):
    journal = tmp_path / "j"
    journal.mkdir()
    lines = [rec(i).model_dump_json() for i in range(5)]
    (journal / "seg-00000003.jsonl").write_text("\n".join(lines) + '\n{"request_id": "torn')  # cut mid-write
    (journal / "spill.jsonl").write_text(json.dumps({"seg": 3, "line": rec(9).model_dump_json()}) + "\n")
    db = Database(tmp_path / "k.duckdb")
    db.execute(
        "INSERT INTO requests (request_id, created_at) VALUES ('r0', now())"
    )  # already committed before crash
    w = RequestLogWriter(db, journal)
    assert w.start() == 6
    w.close()
    assert count(db) == 6  # r0..r4 + r9, r0 not duplicated
    assert not list(journal.glob("*.jsonl"))


def test_flush_gives_read_your_writes(tmp_path):
    db = Database(tmp_path / "k.duckdb")
    w = RequestLogWriter(
        db, tmp_path / "j", RequestLogConfig(flush_interval_s=30)
    )  # would otherwise wait 30 s
    w.start()
    w.submit(rec(1))
    assert w.flush(5)
    assert count(db) == 1
    w.close()
