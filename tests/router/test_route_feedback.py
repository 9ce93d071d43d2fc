"""Route flags end to end without an engine: `type: "route"` feedback → DuckDB → labelled examples →
`keel router train` (the gated refit, through the admin routes in-process) → a model the platform serves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from keel.store.db import Database
from keel.store.feedback import DuckFeedbackStore
from keel.store.router_flags import route_flags

from serving.errors import APIError
from serving.feedback.service import FeedbackService, to_record
from serving.gateway.auth import Principal
from tests.flywheel.planted import request

USER = Principal("key-u", "user")
# products outside the router's name list: the shipped model sends them to domain
MISROUTED = [
    "Firebird 数据库怎么备份",
    "Firebird 的 gbak 命令怎么用",
    "H2 数据库内存模式怎么开",
    "H2 database in-memory mode settings",
]


def _flag(store: DuckFeedbackStore, rid: str, intent: str, who: Principal = USER):
    fb = FeedbackService.parse(json.dumps({"request_id": rid, "type": "route", "intent": intent}).encode())
    return store.add(to_record(fb, who))


def test_route_feedback_is_validated():
    fb = FeedbackService.parse(b'{"request_id": "r1", "type": "route", "intent": "chat"}')
    assert fb.intent == "chat" and to_record(fb, USER).intent == "chat"
    with pytest.raises(APIError) as e:
        FeedbackService.parse(b'{"request_id": "r1", "type": "route", "intent": "weather"}')
    assert e.value.status == 400 and e.value.param == "intent"
    with pytest.raises(APIError) as e:
        FeedbackService.parse(b'{"request_id": "r1", "type": "route"}')
    assert e.value.param == "intent"
    with pytest.raises(APIError) as e:
        FeedbackService.parse(b'{"request_id": "r1", "type": "routing", "intent": "chat"}')
    assert "route" in str(e.value)


def test_flags_become_labelled_examples(tmp_path):
    db = Database(tmp_path / "keel.duckdb")
    con = db.cursor()
    request(con, "r1", "key-u", "Firebird 数据库怎么备份", "…", 1)
    request(con, "r2", "key-u", "你好", "你好！", 2, route="chat")
    store = DuckFeedbackStore(db)
    _, _, dup = _flag(store, "r1", "chat")
    assert not dup
    assert _flag(store, "r1", "chat")[2]  # the same flag again is one row
    _flag(store, "r1", "out_of_scope")  # a second opinion later: the latest wins
    rows = route_flags(db)
    assert [(r["request_id"], r["text"], r["intent"], r["routed"]) for r in rows] == [
        ("r1", "Firebird 数据库怎么备份", "out_of_scope", "domain")
    ]
    # thumbs on the same request are no route flag
    fb = FeedbackService.parse(b'{"request_id": "r2", "type": "thumbs", "rating": "up"}')
    store.add(to_record(fb, USER))
    assert len(route_flags(db)) == 1
    db.close()


@pytest.mark.slow
def test_keel_router_train_refits_on_flags_gated(tmp_path):
    """One real refit (~1 min on a busy 2-core CPU): flags in, gate decision out, model written where
    the platform reads it, and the flagged kind of message now refused."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = Database(data_dir / "keel.duckdb")
    con = db.cursor()
    store = DuckFeedbackStore(db)
    for n, text in enumerate(MISROUTED):
        request(con, f"r{n}", "key-u", text, "…", n)
        _flag(store, f"r{n}", "out_of_scope")
    db.close()
    env = {**os.environ, "KEEL_DATA_DIR": str(data_dir), "KEEL_RAG__CORPUS_PATHS": "[]"}
    env.pop("KEEL_CONFIG", None)

    def keel(*args):
        return subprocess.run(
            [sys.executable, "-m", "keel", *args], env=env, capture_output=True, text=True, timeout=900
        )

    listed = keel("router", "flags", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["text"] for r in json.loads(listed.stdout)) == sorted(MISROUTED)

    proc = keel("router", "train", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["passed"] and out["flags"] == 4 and out["training"]["sources"]["flagged"] == 4
    assert {g["gate"] for g in out["gates"]} >= {"accuracy", "recall.out_of_scope"}
    model_file = data_dir / "router" / "model.json"
    assert out["written"] == str(model_file) and model_file.exists()

    from serving.rag.embedder import load_embedder
    from serving.router.linear import LinearClassifier, load_model

    after = LinearClassifier(load_model(model_file), load_embedder())
    before = LinearClassifier(load_model(), load_embedder())
    probe = "Firebird 数据库的备份怎么做"
    assert before.classify_sync(probe).intent == "domain"  # what the flags were about
    assert after.classify_sync(probe).intent == "out_of_scope"

    evald = keel("eval", "router")  # evaluates the model the platform would serve: the refitted one
    assert evald.returncode == 0 and str(model_file) in evald.stdout and "precision" in evald.stdout
