"""Lineage and the champion alias on a real database file, real checkpoint folders and the real CLI.

A planted log (one key named like simulated traffic) is mined, reviewed and exported; two checkpoints
are registered on top of base with those exports as their datasets; promotion and rollback (offline:
no platform, so they move the registry) move the `champion` alias; `keel lineage` answers both ways.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from keel.checkpoints.promotion import PromotionService
from keel.config import load_settings
from keel.cycle.mining import run_export, run_mining
from keel.store import aliases, registry
from keel.store.db import Database
from keel.store.review import ReviewQueue

from tests.flywheel.planted import plant
from tests.harness import PlatformProcess


def _checkpoint(base: Path, dest: Path, manifest: dict) -> Path:
    """A servable folder: the base model's files linked, its own manifest."""
    dest.mkdir(parents=True)
    for f in base.iterdir():
        if f.name != "manifest.json":
            (dest / f.name).symlink_to(f)
    (dest / "manifest.json").write_text(json.dumps({"manifest_version": 1, **manifest}))
    return dest


@pytest.fixture
def trained(tmp_path, base_model_dir):
    """(settings, data dir, export result): base → sft-1 (SFT part) → dpo-1 (DPO part), dpo-1 gated."""
    data = tmp_path / "data"
    settings = load_settings(overrides=[f"data_dir={data}", "annotation.double_annotate_fraction=0"])
    db = Database(settings.db_path)
    plant(db.cursor())
    # k2 is the simulator's key: its requests are simulated traffic
    db.execute(
        "INSERT INTO api_keys (key_id, name, key_hash, role) VALUES ('k2', 'simulate-20261101T120000', 'h2', 'user'),"
        " ('k1', 'alice', 'h1', 'user')"
    )
    run_mining(db, settings)
    queue = ReviewQueue(db, lease_s=60)
    while (item := queue.next_item("k-ann")) is not None:
        queue.decide("k-ann", "ann", item["pair_id"], item["lease_token"], "accept")
    export = run_export(db, settings, "snap-1")
    base = data / "checkpoints" / "base"
    _checkpoint(base_model_dir, base, {"version": "base", "stage": "base"})
    registry.ensure_base_registered(db, base)
    ck = data / "checkpoints"
    sft = _checkpoint(
        base_model_dir,
        ck / "sft-1",
        {"version": "sft-1", "parent": "base", "stage": "sft", "datasets": {"sft": export["sft_hash"]}},
    )
    dpo = _checkpoint(
        base_model_dir,
        ck / "dpo-1",
        {"version": "dpo-1", "parent": "sft-1", "stage": "dpo", "datasets": {"dpo": export["dpo_hash"]}},
    )
    registry.add(db, sft)
    registry.add(db, dpo)
    db.execute(
        "INSERT INTO evals (eval_id, version, kind, name, baseline, complete, passed, path, summary) VALUES "
        "('dpo-1/gate-0shot-vs-sft-1', 'dpo-1', 'gate', 'gate-0shot-vs-sft-1', 'sft-1', true, true, 'd.json', '{}')"
    )
    promo = PromotionService(db, None)
    assert promo.current() == "base"
    asyncio.run(promo.promote("sft-1", by="tester", reason="first SFT"))
    asyncio.run(promo.promote("dpo-1", by="tester", reason="nightly"))
    asyncio.run(promo.rollback(by="tester", reason="thumbs-down rate up"))
    yield settings, db, export
    db.close()


def test_champion_alias_moves_with_promotion_and_rollback_and_keeps_history(trained):
    _, db, _ = trained
    assert aliases.get(db) == "sft-1" == registry.serving(db)[0]
    moves = aliases.history(db)
    assert [(m["kind"], m["from_version"], m["to_version"]) for m in reversed(moves)] == [
        ("initial", None, "base"),
        ("promote", "base", "sft-1"),
        ("promote", "sft-1", "dpo-1"),
        ("rollback", "dpo-1", "sft-1"),
    ]
    assert moves[0]["reason"] == "thumbs-down rate up" and moves[0]["swap_id"]
    swaps = {r[0] for r in db.fetchall("SELECT swap_id FROM swaps WHERE status = 'succeeded'")}
    assert {m["swap_id"] for m in moves if m["kind"] != "initial"} == swaps


def test_keel_lineage_both_ways(trained, base_model_dir):
    settings, db, export = trained
    pair_requests = {
        i for (p,) in db.fetchall("SELECT provenance FROM pairs") for i in json.loads(p)["request_ids"]
    }
    db.close()  # the CLI opens the file itself (no platform runs)
    cli = PlatformProcess(data_dir=settings.data_dir, model_dir=base_model_dir).cli

    v = json.loads(cli("lineage", "dpo-1", "--json").stdout)
    assert [p["version"] for p in v["parents"]] == ["sft-1", "base"] and not v["champion"]
    [ds] = v["datasets"]
    assert ds["kind"] == "dpo" and ds["hash"] == export["dpo_hash"] and ds["export_id"] == export["export_id"]
    assert set(ds["request_ids"]) == pair_requests and ds["rows"] == export["pairs"]
    simulated = {r for r in pair_requests if r in {"r-edit2", "r-a", "r-good", "r-eval", "r-legacy", "r-oos"}}
    assert ds["simulated_requests"] == len(simulated) > 0 and "simulate-20261101T120000" in ds["keys"]
    assert [g["passed"] for g in v["gates"]] == [True]
    assert [(p["kind"], p["to_version"]) for p in v["promotions"]] == [
        ("promote", "dpo-1"),
        ("rollback", "sft-1"),
    ]
    assert {m["kind"] for m in v["champion_moves"]} == {"promote", "rollback"}
    text = cli("lineage", "sft-1").stdout
    assert "[champion]" in text and "parents base" in text and "simulated" in text

    rid = sorted(pair_requests)[0]
    r = json.loads(cli("lineage", "--request", rid, "--json").stdout)
    assert r["request"]["request_id"] == rid and r["feedback"] and r["pairs"]
    assert [d["export_id"] for d in r["datasets"]] == [export["export_id"]]
    assert "dpo-1" in {c["version"] for c in r["checkpoints"]}
    assert r["request"]["simulated"] == (rid in simulated)

    for args in (["lineage", "nope"], ["lineage", "--request", "nope"], ["lineage"]):
        bad = cli(*args, check=False)
        assert bad.returncode != 0 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr, (
            bad.stderr
        )
