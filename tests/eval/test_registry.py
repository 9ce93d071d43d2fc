"""Eval runs and gate decisions land in the registry: in the DuckDB file, and through a running platform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from keel.store import evals, registry
from keel.store.db import Database


def _checkpoint(folder: Path, version: str, gate: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    m = {"version": version, "parent": "base", "stage": "sft"}
    if gate:
        m["eval"] = {"gate": gate}
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder


def _eval_json(path: Path, version: str, complete: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ev = {
        "schema": 1,
        "name": "gate-0shot",
        "checkpoint": {"version": version},
        "complete": complete,
        "mmlu": {"summary": {"overall": {"n": 3, "acc": 0.33, "score": 0.3}}},
        "domain": {"summary": {"ppl": 9.5, "bpb": 1.1, "tokens": 100}},
    }
    path.write_text(json.dumps(ev))
    return path


def test_runs_and_gates_are_recorded(tmp_path):
    db = Database(tmp_path / "keel.duckdb")
    base = _checkpoint(tmp_path / "base", "base")
    registry.ensure_base_registered(db, base)
    cand = _checkpoint(tmp_path / "c1", "c1")
    run = _eval_json(cand / "eval" / "gate-0shot.json", "c1", complete=False)

    row = evals.record(db, evals.EvalRecord(kind="run", checkpoint=str(cand), path=str(run)))
    assert row["version"] == "c1" and row["complete"] is False  # a partial run is recorded as partial
    assert row["summary"]["mmlu"]["acc"] == 0.33 and registry.get(db, "c1").status == "candidate"

    decision = cand / "eval" / "gate-0shot-vs-base" / "decision.json"
    decision.parent.mkdir(parents=True)
    decision.write_text(
        json.dumps({"passed": False, "baseline": "base", "reasons": ["partial"], "gates": []})
    )
    # compare_checkpoints links the decision in the manifest; recording refreshes the registry's copy
    m = json.loads((cand / "manifest.json").read_text())
    m["eval"] = {"gate": {"passed": False, "decision": "eval/gate-0shot-vs-base/decision.json"}}
    (cand / "manifest.json").write_text(json.dumps(m))
    row = evals.record(db, evals.EvalRecord(kind="gate", checkpoint=str(cand), path=str(decision)))
    assert (row["kind"], row["baseline"], row["passed"]) == ("gate", "base", False)
    assert row["summary"]["reasons"] == ["partial"]
    stored = db.fetchall("SELECT manifest FROM checkpoints WHERE version = 'c1'")[0][0]
    assert json.loads(stored)["eval"]["gate"]["passed"] is False

    # Re-recording the same run replaces its row; the listing is per version.
    run = _eval_json(run, "c1", complete=True)
    evals.record(db, evals.EvalRecord(kind="run", checkpoint=str(cand), path=str(run)))
    rows = evals.list_for(db, "c1")
    assert [(r["kind"], r["complete"]) for r in rows] == [("gate", None), ("run", True)]
    assert evals.list_for(db, "base") == []
    with pytest.raises(registry.RegistryError, match="missing.json: not found"):
        evals.record(
            db, evals.EvalRecord(kind="run", checkpoint=str(cand), path=str(tmp_path / "missing.json"))
        )
    db.close()


@pytest.mark.slow
def test_cli_records_through_the_running_platform(platform_server, tmp_path, monkeypatch):
    """While `keel up` holds the database, the eval CLI finds the serving version and records via the admin API."""
    from keel.cli import CliState
    from keel.cli.eval import _Registry

    monkeypatch.setenv("KEEL_DATA_DIR", str(platform_server.data_dir))
    monkeypatch.delattr(CliState, "_settings", raising=False)
    try:
        from keel.cli import load
        from keel.cli.client import AdminClient, running_platform

        live = running_platform(load())
        assert live is not None  # the platform is running: calls go to it, no second DuckDB writer
        reg = _Registry()
        version, path = reg.serving()
        run = _eval_json(tmp_path / "gate-0shot.json", version, complete=True)
        row = reg.record("run", path, run)
        assert row["version"] == version and row["kind"] == "run" and row["complete"] is True
        listed = AdminClient(*live).call("GET", "/admin/evals", params={"version": version})
        assert any(r["eval_id"] == row["eval_id"] for r in listed)
    finally:
        monkeypatch.delattr(CliState, "_settings", raising=False)
