"""`keel backup` of a running platform (requests still arriving, the indexer busy) restores into another
data dir, and the platform started there serves the same version with the same request-log rows."""

from __future__ import annotations

import json
import shutil
import threading
import time

import httpx
import pytest

from bench.support.derive import derive_checkpoint
from tests.harness import PlatformProcess, db_rows
from tests.swap.test_hot_swap import answer, same_weights

pytestmark = pytest.mark.slow

DOCS = ["sql-statements/sql-statement-show-engines.md", "sql-statements/sql-statement-flashback-table.md"]


def chat(p: PlatformProcess, key: str, text: str) -> str:
    r = httpx.post(
        f"{p.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "keel",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 12,
            "temperature": 0,
        },
        timeout=300,
    )
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def test_backup_of_a_running_platform_restores_to_the_same_version_and_rows(
    base_model_dir, shared_data, tmp_path
):
    docs = tmp_path / "docs"
    for rel in DOCS:
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / "domain" / "tidb-docs-zh" / "docs" / rel, docs / rel)
    common = ["router.enabled=false", "engine.kvcache_gib=1"]
    a = PlatformProcess(
        data_dir=tmp_path / "a", model_dir=base_model_dir, overrides=[*common, f"rag.corpus_paths=[{docs}]"]
    ).start(timeout=900)
    try:
        key = a.create_key("backup")
        before = [chat(a, key, f"Say {w}.") for w in ("one", "two", "three")]
        v2 = derive_checkpoint(base_model_dir, tmp_path / "v2", "v2", scale=1.05)
        a.cli("checkpoints", "add", str(v2))
        assert "promoted v2" in a.cli("promote", "v2", "--reason", "backup test").stdout
        v2_answer = answer(a.url, key)  # what v2's weights say: the restored platform must say the same
        before += [chat(a, key, f"Say {w}.") for w in ("four", "five")]

        # requests keep arriving while the backup runs: they must neither fail nor break the snapshot
        stop, during, errors = threading.Event(), [], []

        def traffic() -> None:
            while not stop.is_set():
                try:
                    during.append(chat(a, key, "Keep going."))
                except AssertionError as e:  # pragma: no cover - reported below
                    errors.append(str(e))

        t = threading.Thread(target=traffic)
        t.start()
        try:
            out = a.cli("backup", str(tmp_path / "bk"), "--json")
        finally:
            stop.set()
            t.join(300)
        assert not errors, errors[:3]
        summary = json.loads(out.stdout)
        assert summary["live"] is True and summary["serving_version"] == "v2" and summary["rag"] is True
        assert {c["version"]: c["copied"] for c in summary["checkpoints"]} == {"base": True, "v2": True}
        index_a = a.admin("GET", "/admin/index").json()
        rows_a = {r["request_id"]: r for r in a.rows(before)}
        assert len(rows_a) == len(before)
    finally:
        a.stop()

    # every row in the backup's database, as the source platform had it at the snapshot
    backed_up = {r[0] for r in db_rows(tmp_path / "bk" / "keel.duckdb", "SELECT request_id FROM requests")}
    assert set(before) <= backed_up and len(backed_up) == summary["requests"]
    all_a = {r[0] for r in db_rows(tmp_path / "a" / "keel.duckdb", "SELECT request_id FROM requests")}
    assert backed_up <= all_a

    b = PlatformProcess(
        data_dir=tmp_path / "b", model_dir=base_model_dir, overrides=[*common, "rag.corpus_paths=[]"]
    )
    restore = b.cli("restore", str(tmp_path / "bk"), "--json")
    restored = json.loads(restore.stdout)
    assert restored["serving_version"] == "v2" and restored["requests"] == summary["requests"]
    # restoring over it again is refused without --force (nothing is overwritten silently)
    again = b.cli("restore", str(tmp_path / "bk"), check=False)
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    b.start(timeout=900)
    try:
        health = httpx.get(f"{b.url}/health", timeout=10).json()
        assert health["checkpoint_version"] == "v2"
        cps = {c["version"]: c for c in b.admin("GET", "/admin/checkpoints").json()}
        assert cps["v2"]["status"] == "serving"
        assert cps["v2"]["path"] == str(tmp_path / "b" / "checkpoints" / "v2")  # the restored copy
        rows_b = {r["request_id"]: r for r in b.rows(sorted(backed_up), timeout=30)}
        assert set(rows_b) == backed_up
        for rid, row in rows_a.items():
            assert rows_b[rid] == row, rid
        assert b.admin("GET", "/admin/requests/count").json()["count"] == len(backed_up)
        # the index came back: its catalog (BM25) and vectors; the indexer finds nothing new to embed
        deadline = time.monotonic() + 300
        while (index_b := b.admin("GET", "/admin/index").json())["chunks_total"] == 0 or index_b[
            "dense_pending"
        ]:
            assert time.monotonic() < deadline, index_b
            time.sleep(1)
        assert index_b["chunks_total"] == index_a["chunks_total"] > 0
        assert index_b["chunks_embedded"] == index_b["chunks_total"]
        # the restored platform answers, on v2
        rid = chat(b, key, "Hello again.")  # API keys came back with the database
        assert b.rows([rid])[0]["checkpoint_version"] == "v2"
        assert same_weights(answer(b.url, key), v2_answer), "restored as v2 by label, not by its weights"
    finally:
        b.stop()
