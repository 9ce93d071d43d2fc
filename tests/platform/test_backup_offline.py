"""`keel backup` / `keel restore` of a stopped platform's data dir through the real CLI (fast tier; the
running-platform case with engines and traffic is tests/platform/test_backup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def keel(data_dir: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEEL_DATA_DIR": str(data_dir)}
    env.pop("KEEL_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-m", "keel", *args], env=env, capture_output=True, text=True, timeout=180
    )
    assert (out.returncode == 0) == ok, out.stderr
    return out


def test_offline_backup_and_restore(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    keel(a, "keys", "create", "--name", "alice")
    dest = tmp_path / "backups" / "nested" / "bk"  # parents are created
    summary = json.loads(keel(a, "backup", str(dest), "--json").stdout)
    assert summary["live"] is False and summary["tables"]["api_keys"] == 1
    assert (dest / "backup.json").exists() and not list(dest.parent.glob(".bk.tmp-*"))
    again = keel(a, "backup", str(dest), ok=False)
    assert "already exists" in again.stderr and "Traceback" not in again.stderr

    keel(b, "restore", str(dest))
    assert [k["name"] for k in json.loads(keel(b, "keys", "list", "--json").stdout)] == ["alice"]
    refused = keel(b, "restore", str(dest), ok=False)
    assert "--force" in refused.stderr
    out = json.loads(keel(b, "restore", str(dest), "--force", "--json").stdout)
    assert out["moved_aside"] and (Path(out["moved_aside"]) / "keel.duckdb").exists()
    bad = keel(b, "restore", str(tmp_path), ok=False)
    assert "not a complete Keel backup" in bad.stderr


QUESTIONS = [
    "TiDB 的 TiKV 节点扩容步骤是什么？",
    "How do I enable TiFlash replicas for a table?",
    "今天天气怎么样？",
    "Write me a poem about autumn.",
    "MySQL 主从复制延迟怎么排查？",
    "What does FLASHBACK TABLE do in TiDB?",
    "你好",
    "How do I cook rice?",
]


def _router_decisions(settings, embedder) -> list[tuple[str, dict[str, float]]]:
    """What the platform's router would answer with this data dir: the model `keel up` loads
    (serving_model_file), on the real embedder."""
    from keel.cycle.router_fit import serving_model_file

    from serving.router.linear import LinearClassifier, load_model

    clf = LinearClassifier(load_model(serving_model_file(settings)), embedder)
    return [(c.intent, c.scores) for c in map(clf.classify_sync, QUESTIONS)]


def test_a_restore_brings_back_the_router_schedule_datasets_and_cycles(tmp_path: Path):
    """Issue 28 item 6: the refitted router, the schedule, datasets and cycle folders are in the backup;
    after a restore into another data dir the router decides the same and lineage points at folders that
    exist (an export outside the data dir is listed as left out and lineage says "not in backup")."""
    import sqlite3

    from keel.config import load_settings
    from keel.store import flywheel, lineage, registry
    from keel.store.backup import backup, restore
    from keel.store.cycles import DuckCycleStore
    from keel.store.db import Database

    from flywheel.cycle import CycleRecord, StepRecord
    from serving.rag.embedder import load_embedder
    from serving.router.linear import load_model

    da, db_dir = tmp_path / "a", tmp_path / "b"
    a = load_settings(overrides=[f"data_dir={da}"])
    b = load_settings(overrides=[f"data_dir={db_dir}"])
    da.mkdir()
    db = Database(a.db_path)

    # a refitted router model: the packaged one with out_of_scope pushed up, so it decides differently
    model = load_model(None)
    model.bias[model.labels.index("out_of_scope")] += 6.0
    (da / "router").mkdir()
    model.save(da / "router" / "model.json")
    embedder = load_embedder(a.rag.embedder)  # whichever runtime: the same model
    decided = _router_decisions(a, embedder)
    assert decided != _router_decisions(b, embedder)  # b has no refit yet: the packaged model decides

    # the nightly schedule's job store
    with sqlite3.connect(da / "scheduler.sqlite") as con:
        con.execute("CREATE TABLE apscheduler_jobs (id TEXT PRIMARY KEY, next_run_time REAL, job_state BLOB)")
        con.execute("INSERT INTO apscheduler_jobs VALUES ('keel-nightly-cycle', 1.5e9, x'00ff')")

    # an export in the data dir and one outside it, each the dataset of a registered checkpoint
    exports = {"e1": da / "datasets" / "flywheel-1", "e2": tmp_path / "elsewhere" / "flywheel-2"}
    for n, (name, folder) in enumerate(exports.items()):
        (folder / "dpo").mkdir(parents=True)
        (folder / "dpo" / "provenance.jsonl").write_text(
            json.dumps({"request_ids": [f"req-{name}"], "feedback_ids": [], "source": "thumbs"}) + "\n"
        )
        flywheel.record_export(db, f"export-{name}", str(folder), f"all-{name}", {"dpo_hash": f"dpo-{name}"})
        cp = da / "checkpoints" / f"v{n + 1}"
        cp.mkdir(parents=True)
        (cp / "manifest.json").write_text(json.dumps({"stage": "dpo", "datasets": {"dpo": f"dpo-{name}"}}))
        registry.add(db, cp)

    # a cycle that trained v1, with its report in its folder
    report = da / "cycles" / "cycle-1" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>cycle-1</html>")
    store = DuckCycleStore(db)
    store.create(
        CycleRecord(
            "cycle-1", "succeeded", "cli", ["dpo"], False, {}, outcome="promoted", report=str(report),
            started_at=datetime.now(UTC), finished_at=datetime.now(UTC),
        )
    )  # fmt: skip
    store.save_step(StepRecord("cycle-1", "train:dpo", 1, "done", output={"version": "v1", "path": str(da)}))
    (da / "checkpoints" / "stray").mkdir()  # never registered: named, not copied
    (da / "logs").mkdir()
    (da / "logs" / "engine.log").write_text("engine says hello\n")

    before = {v: lineage.of_version(db, v) for v in ("v1", "v2")}
    assert before["v1"]["datasets"][0]["path"] == str(exports["e1"]) and before["v1"]["cycle"]["report"]
    summary = backup(a, db, tmp_path / "bk")
    db.close()
    assert {"router", "scheduler.sqlite", "datasets", "cycles"} <= set(summary.included)
    left = {x["path"]: x["why"] for x in summary.left_out}
    assert str(exports["e2"]) in left and "not in backup" in left[str(exports["e2"])]
    assert "engine" in left[str(da / "logs")]
    assert left[str(da / "checkpoints" / "stray")] == "not a registered checkpoint"
    assert json.loads((tmp_path / "bk" / "backup.json").read_text())["left_out"] == summary.left_out

    out = restore(b, tmp_path / "bk")
    assert set(out.restored) == {"router", "scheduler.sqlite", "datasets", "cycles"}
    assert _router_decisions(b, embedder) == decided  # the refit came back: same routes, same scores
    with sqlite3.connect(db_dir / "scheduler.sqlite") as con:
        assert con.execute("SELECT id, next_run_time, job_state FROM apscheduler_jobs").fetchall() == [
            ("keel-nightly-cycle", 1.5e9, b"\x00\xff")
        ]
    db = Database(b.db_path)
    try:
        after = {v: lineage.of_version(db, v) for v in ("v1", "v2")}
    finally:
        db.close()
    # v1: the same lineage, every path now in b, every folder there
    moved = json.loads(json.dumps(before["v1"], default=str).replace(str(da), str(db_dir)))
    assert json.loads(json.dumps(after["v1"], default=str)) == moved
    ds = after["v1"]["datasets"][0]
    assert ds["path"] == str(db_dir / "datasets" / "flywheel-1") and ds["on_disk"] and ds["rows"] == 1
    assert Path(after["v1"]["cycle"]["report"]).read_text() == "<html>cycle-1</html>"
    # v2's export was outside the data dir: lineage says so
    assert after["v2"]["datasets"][0]["path"] == str(exports["e2"])
    assert after["v2"]["datasets"][0]["backup"] == "not in backup"
