"""The cycle on the platform's real parts without an engine: DuckDB rows, a real CPT snapshot, a short real
training run and real evals (child processes), the gate, promotion through PromotionService (registry
only: no engine runs), the report; changed-documents detection; kill -9 during training, then resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.eval.conftest import write_cmmlu, write_domain, write_general, write_mmlu

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

DOCS = {
    "deploy.md": "# 部署\n\n使用 TiUP 部署 TiDB 集群。TiUP 是 TiDB 的集群管理组件，可以部署、启动、关闭、扩容和缩容集群。",
    "tikv.md": "# TiKV\n\nTiKV 是分布式事务型键值数据库，提供了满足 ACID 约束的分布式事务接口，通过 Raft 协议保证多副本数据一致性。",
    "pd.md": "# PD\n\nPD 是整个 TiDB 集群的元信息管理模块，负责存储每个 TiKV 节点实时的数据分布情况和集群的整体拓扑结构。",
}


def _data(root: Path) -> Path:
    write_mmlu(root / "mmlu")
    write_cmmlu(root / "cmmlu")
    write_general(root / "general")
    for lang, text in (
        ("en", "The river flows to the sea through the valley. "),
        ("zh", "河流穿过山谷流向大海。"),
    ):
        (root / "general" / lang / "train.jsonl").write_text(
            "".join(json.dumps({"text": text * (3 + i)}, ensure_ascii=False) + "\n" for i in range(6)),
            encoding="utf-8",
        )
    dom = write_domain(root / "domain" / "tidb")
    for name, text in DOCS.items():
        (dom / "docs" / name).write_text(text * 3, encoding="utf-8")
    return root


def _policy(path: Path, gates: dict) -> Path:
    path.write_text(yaml.safe_dump({"bootstrap_samples": 200, "gates": gates}), encoding="utf-8")
    return path


def _profile(path: Path, data: Path, policy: Path, **cpt_over) -> Path:
    prof = {
        "cycle": {
            "stages": ["cpt", "sft", "dpo"],
            "min_sft_examples": 1,
            "min_dpo_pairs": 1,
            "policy": str(policy),
            "eval": {"backend": "transformers", "gate_per_subject": 5, "gate_general_docs": 2},
            "cpt_data": {
                "sources": [str(data / "domain" / "tidb" / "docs")],
                "general": [
                    str(data / "general" / "en" / "train.jsonl"),
                    str(data / "general" / "zh" / "train.jsonl"),
                ],
                "ratio": "7:3",
                "overrides": {"min_chars": 10},
            },
            "cpt": {
                "overrides": {
                    "max_length": 64,
                    "per_device_train_batch_size": 2,
                    "learning_rate": 1e-4,
                    "max_steps": 2,
                    "eval_steps": 0,
                    "save_steps": 100,
                    "max_eval_samples": 2,
                    "early_stop_margin": 0.0,
                    **cpt_over,
                },
                "budget": {"wall_clock_s": 300},
            },
            "launcher": {"threads": 1, "nice": 5},
        }
    }
    path.parent.mkdir(
        parents=True, exist_ok=True
    )  # profiles are read from the data dir (or the shipped ones)
    path.write_text(yaml.safe_dump(prof), encoding="utf-8")
    return path


@pytest.fixture
def env(tmp_path, base_model_dir):
    data = _data(tmp_path / "data")
    cfg = tmp_path / "keel.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "keel"),
                "model": {"path": str(base_model_dir)},
                "eval": {"data": str(data)},
            }
        )
    )
    return {
        "root": tmp_path,
        "data": data,
        "config": cfg,
        "pass": _policy(
            tmp_path / "pass.yaml", {"general_en_bpb": {"metric": "general_en.bpb", "max_rise_pct": 1000}}
        ),
        "strict": _policy(
            tmp_path / "strict.yaml", {"domain_bpb": {"metric": "domain.bpb", "min_fall_pct": 99}}
        ),
    }


def _service(env):
    from keel.checkpoints.promotion import PromotionService
    from keel.config import load_settings
    from keel.cycle.service import CycleService
    from keel.store import registry
    from keel.store.db import Database

    settings = load_settings(env["config"])
    db = Database(settings.db_path)
    registry.ensure_base_registered(db, settings.model.path)
    return CycleService(settings, db, PromotionService(db, None)), db


def test_cycle_promotes_then_skips_unchanged_docs_then_rejects_and_keeps_them_to_learn(env):
    from keel.store import registry

    svc, db = _service(env)
    try:
        prof = _profile(env["root"] / "keel" / "p1.yaml", env["data"], env["pass"])
        c = svc.start("cli", profile=str(prof), wait=True)
        shown = svc.show(c.cycle_id)
        steps = {s["name"]: s for s in shown["steps"]}
        assert c.status == "succeeded", (c.error, steps)
        assert c.outcome == "promoted"
        assert (
            steps["snapshot:sft"]["status"] == "skipped"
            and "fewer than the 1" in steps["snapshot:sft"]["reason"]
        )
        assert steps["train:cpt"]["output"]["steps"] == 2 and steps["train:cpt"]["output_hash"]
        assert (
            steps["snapshot:cpt"]["output"]["docs_changed"] == steps["snapshot:cpt"]["output"]["docs_total"]
        )
        version = steps["train:cpt"]["output"]["version"]
        assert registry.serving(db)[0] == version  # the same swap path as `keel promote` (offline)
        assert (
            db.fetchall(
                "SELECT count(*) FROM swaps WHERE to_version = ? AND status = 'succeeded'", [version]
            )[0][0]
            == 1
        )
        assert {r[0] for r in db.fetchall("SELECT kind FROM evals WHERE version = ?", [version])} == {
            "run",
            "gate",
        }
        html = Path(c.report).read_text()
        for link in ("dataset stats", "training report", "gate report", "promoted"):
            assert link in html, link

        # nothing changed in the corpus: CPT is skipped with the reason, nothing is trained
        c2 = svc.start("cli", profile=str(prof), wait=True)
        s2 = {s["name"]: s for s in svc.show(c2.cycle_id)["steps"]}
        assert c2.outcome == "nothing_to_train", c2.error
        assert "0 domain documents added or changed" in s2["snapshot:cpt"]["reason"]

        # one document changed; a gate that cannot pass: rejected with its reason, serving unchanged
        (env["data"] / "domain" / "tidb" / "docs" / "pd.md").write_text(DOCS["pd.md"] * 5, encoding="utf-8")
        strict = _profile(env["root"] / "keel" / "p2.yaml", env["data"], env["strict"])
        c3 = svc.start("api", profile=str(strict), wait=True)
        s3 = {s["name"]: s for s in svc.show(c3.cycle_id)["steps"]}
        assert c3.outcome == "rejected", c3.error
        assert s3["snapshot:cpt"]["output"]["docs_changed"] == 1
        assert any("domain_bpb" in r for r in s3["promote"]["output"]["reasons"])
        assert registry.serving(db)[0] == version
        assert registry.get(db, s3["train:cpt"]["output"]["version"]).status == "rejected"
        assert s3["train:cpt"]["output"]["parent"] == version  # trained from what was serving

        # the rejected candidate taught the serving model nothing: the changed document is still new to it
        # (a dry run computes the CPT snapshot's change set and trains nothing)
        c4 = svc.start("cli", profile=str(prof), dry_run=True, wait=True)
        s4 = {s["name"]: s for s in svc.show(c4.cycle_id)["steps"]}
        assert s4["snapshot:cpt"]["status"] == "done" and s4["snapshot:cpt"]["output"]["docs_changed"] == 1, (
            s4
        )
    finally:
        db.close()


def _cli(env, *args, **kw):
    e = {**os.environ, "KEEL_CONFIG": str(env["config"]), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "keel", "cycle", *args], env=e, cwd=REPO, **kw)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill_during_training_then_resume_without_duplicate_work(env):
    from tests.harness import db_rows

    prof = _profile(
        env["root"] / "keel" / "p.yaml",
        env["data"],
        env["pass"],
        max_steps=8,
        save_steps=2,
        save_total_limit=4,
    )
    proc = _cli(env, "run", "--profile", str(prof), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    keel = env["root"] / "keel"
    deadline = time.monotonic() + 600
    state = None
    while time.monotonic() < deadline and state is None:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        states = [
            p
            for p in keel.glob("checkpoints/.*-cpt.work/checkpoint-*")
            if (p / "trainer_state.json").exists()
        ]
        state = states[0] if states else None
        time.sleep(0.5)
    assert state is not None, "no resumable state appeared"
    pidfile = next((keel / "cycles").glob("*/train-cpt.pid"))
    child = json.loads(pidfile.read_text())["pid"]
    proc.send_signal(signal.SIGKILL)  # the platform (here: the CLI running the cycle) dies mid-training
    proc.wait()
    for _ in range(50):  # the training child dies with it (no orphan)
        if not _alive(child):
            break
        time.sleep(0.2)
    assert not _alive(child), "training child outlived its parent"

    db = keel / "keel.duckdb"
    ((cycle_id, status),) = db_rows(db, "SELECT cycle_id, status FROM cycles")
    assert status == "running"  # nobody recorded the crash yet
    r = subprocess.run(
        [sys.executable, "-m", "keel", "cycle", "resume", cycle_id],
        env={**os.environ, "KEEL_CONFIG": str(env["config"]), "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = {
        n: (s, a, json.loads(o) if o else {})
        for n, s, a, o in db_rows(
            db, "SELECT name, status, attempts, output FROM cycle_steps WHERE cycle_id = ?", [cycle_id]
        )
    }
    assert rows["mine"][1] == 1 and rows["snapshot:cpt"][1] == 1  # not run again
    assert rows["train:cpt"][0] == "done" and rows["train:cpt"][1] == 2
    out = rows["train:cpt"][2]
    assert out["steps"] == 8
    assert out["resumed_from"] and out["resumed_from"].startswith("checkpoint-")  # continued, not restarted


def test_dry_run_mines_and_builds_snapshots_but_trains_and_promotes_nothing(env):
    """`keel cycle run --dry-run` on the real steps: the planted log is mined, the CPT snapshot and the
    SFT export are built on disk with their content hashes; no child is started, no checkpoint folder,
    registry row, evaluation or swap appears, and serving stays the base."""
    from keel.config import load_settings
    from keel.store.db import Database

    from tests.flywheel.planted import plant
    from tests.harness import db_rows
    from training.data.snapshot import content_hash

    settings = load_settings(env["config"])
    db = Database(settings.db_path)
    plant(db.cursor())
    db.close()
    prof = _profile(env["root"] / "keel" / "p.yaml", env["data"], env["pass"])
    e = {**os.environ, "KEEL_CONFIG": str(env["config"]), "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "keel", "cycle", "run", "--dry-run", "--profile", str(prof), "--json"],
        env=e,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    c = json.loads(r.stdout)
    steps = {s["name"]: s for s in c["steps"]}
    assert c["status"] == "succeeded" and c["outcome"] == "dry_run" and c["dry_run"] is True

    # mined for real: the planted feedback became pairs and SFT examples in the database
    assert steps["mine"]["status"] == "done" and steps["mine"]["output"]["pairs"] > 0
    assert steps["mine"]["output"]["sft"] > 0
    db_path = settings.db_path
    assert db_rows(db_path, "SELECT count(*) FROM pairs")[0][0] == steps["mine"]["output"]["pairs"]
    # snapshots built on disk, their recorded hashes those of the files
    cpt = steps["snapshot:cpt"]
    assert cpt["status"] == "done" and cpt["output"]["rows"] > 0
    assert content_hash(Path(cpt["output"]["path"])) == cpt["output"]["hash"] == cpt["output_hash"]
    sft = steps["snapshot:sft"]
    assert sft["status"] == "done" and sft["output"]["rows"] == steps["mine"]["output"]["sft"]
    assert content_hash(Path(sft["output"]["path"])) == sft["output_hash"]
    assert (
        len((Path(sft["output"]["path"]) / "train.jsonl").read_text().splitlines()) == sft["output"]["rows"]
    )
    # nothing reviewed yet: DPO's data are the pairs the trust policy accepts (edit, regenerate, choice)
    dpo = steps["snapshot:dpo"]
    assert dpo["status"] == "done" and dpo["output"]["rows"] == dpo["output"]["auto_accepted"] == 3

    # nothing trained, evaluated or promoted
    for name in ("router", "train:cpt", "train:sft", "train:dpo", "evaluate", "gate", "promote"):
        assert steps[name]["status"] == "skipped" and steps[name]["reason"] == "dry run", steps[name]
    ckpts = settings.checkpoints_dir
    assert not ckpts.exists() or not [p for p in ckpts.iterdir() if c["cycle_id"] in p.name]
    cycle_dir = settings.data_dir / "cycles" / c["cycle_id"]
    assert not list(cycle_dir.glob("train-*")) and not list(cycle_dir.glob("eval-*"))
    assert db_rows(db_path, "SELECT version, status FROM checkpoints") == [("base", "serving")]
    assert db_rows(db_path, "SELECT count(*) FROM swaps")[0][0] == 0
    assert db_rows(db_path, "SELECT count(*) FROM evals")[0][0] == 0
    assert Path(c["report"]).exists() and "dry_run" in Path(c["report"]).read_text()
