"""`keel eval run|gate` end to end on the embedded base and a candidate trained for a few steps.

The CLI runs in-process against a registry in tmp (no platform running, so it opens the DuckDB file
itself); the gate's baseline comes from that registry's serving version, not the candidate's parent.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from tests.eval.conftest import DOMAIN_ANSWER
from training.checkpoint import load_manifest

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """Each test gets its own data dir (registry database) and freshly loaded settings."""
    from keel.cli import CliState

    monkeypatch.setenv("KEEL_DATA_DIR", str(tmp_path / "keel-data"))
    monkeypatch.delattr(CliState, "_settings", raising=False)
    yield tmp_path / "keel-data"
    monkeypatch.delattr(CliState, "_settings", raising=False)


def _app():
    from keel.cli.eval import app

    return app


def _served_copy(base_model_dir, dest):
    """The base checkpoint with its weights linked, so tests never write into the shared cache."""
    dest.mkdir()
    for f in base_model_dir.iterdir():
        if f.name == "manifest.json" or f.name == "eval":
            continue
        (dest / f.name).symlink_to(f)
    shutil.copy(base_model_dir / "manifest.json", dest / "manifest.json")
    return dest


def _candidate(base_model_dir, dest):
    """A few optimizer steps on the domain FAQ answer: its perplexity must fall."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    ids = torch.tensor([[tok.bos_token_id, *tok(DOMAIN_ANSWER, add_special_tokens=False).input_ids]])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    model.train()
    for _ in range(3):
        opt.zero_grad()
        model(ids, labels=ids).loss.backward()
        opt.step()
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    # The parent named here is not the served checkpoint: the gate must still compare with what serves.
    (dest / "manifest.json").write_text(json.dumps({"version": "cand-1", "parent": "cpt-0", "stage": "cpt"}))
    return dest


def _registry(data_dir):
    from keel.store.db import Database

    return Database(data_dir / "keel.duckdb")


@pytest.mark.slow
def test_run_and_gate_end_to_end(
    base_model_dir, tiny_data, tmp_path, artifacts_dir, isolated_settings, monkeypatch
):
    from keel.cli import CliState
    from keel.store import evals, registry

    torch.set_num_threads(min(2, torch.get_num_threads()))
    base = _served_copy(base_model_dir, tmp_path / "base")
    db = _registry(isolated_settings)
    registry.ensure_base_registered(db, base)  # `keel up` does this: base is what serves
    db.close()
    cand = _candidate(base_model_dir, tmp_path / "cand")

    res = runner.invoke(_app(), ["run", str(base), "--data", str(tiny_data)])
    assert res.exit_code == 0, res.output
    ev_path = base / "eval" / "gate-0shot.json"
    ev = json.loads(ev_path.read_text())
    assert ev["backend"] == "vllm" and ev["complete"] and ev["mmlu"]["summary"]["overall"]["n"] == 10
    assert ev["cmmlu"]["summary"]["overall"]["n"] == 10 and ev["domain"]["summary"]["docs"] == 1
    assert load_manifest(base).eval["runs"]["gate-0shot"]["path"] == "eval/gate-0shot.json"

    # The gate on the transformers backend: `run` above went through the default (vLLM) one, and the vLLM
    # scorer matches transformers (tests/eval/test_mc.py, test_perplexity.py); this spares two in-process
    # vLLM starts (~45 s each on CI). Baseline scores come from the same backend: base is scored again.
    monkeypatch.setenv("KEEL_EVAL__BACKEND", "transformers")
    monkeypatch.delattr(CliState, "_settings", raising=False)
    # No --baseline: the registry's serving version (base), although the candidate's parent is cpt-0.
    # The policy asks only what the candidate was trained for (domain perplexity falls by 2 %): it passes.
    policy = tmp_path / "domain-only.yaml"
    policy.write_text(
        "require_significance: false\ngates:\n  domain_ppl: {metric: domain.ppl, min_fall_pct: 2.0}\n"
    )
    res = runner.invoke(_app(), ["gate", str(cand), "--data", str(tiny_data), "--policy", str(policy)])
    assert res.exit_code == 0, res.output
    assert "gate: PASS" in res.output and "FAIL" not in res.output, res.output
    m = load_manifest(cand).dump()
    gate = m["eval"]["gate"]
    assert m["version"] == "cand-1" and gate["baseline"] == "base"
    decision = json.loads((cand / gate["decision"]).read_text())
    assert decision["passed"] is True and gate["passed"] is True
    rows = {g["gate"]: g for g in decision["gates"]}
    assert rows["domain_ppl"]["delta"] < 0  # trained on the held-out answer: perplexity fell
    assert (cand / gate["report"]).read_text().count("<tr>") > 6
    shutil.copy(cand / gate["png"], artifacts_dir / "eval-gate-e2e.png")

    # The registry recorded both runs and the decision; the candidate got registered on the way.
    db = _registry(isolated_settings)
    try:
        recs = {(r["version"], r["kind"]): r for r in evals.list_for(db)}
        assert recs[("base", "run")]["complete"] and recs[("cand-1", "run")]["complete"]
        g = recs[("cand-1", "gate")]
        assert g["baseline"] == "base" and g["passed"] == decision["passed"]
        assert registry.get(db, "cand-1").gate_passed == decision["passed"]
    finally:
        db.close()

    # A partial eval (--limit) is recorded but never passes, whatever the scores.
    res = runner.invoke(
        _app(), ["gate", str(cand), "--data", str(tiny_data), "--limit", "2", "--policy", str(policy)]
    )
    assert res.exit_code == 1 and "gate: FAIL" in res.output and "partial" in res.output, res.output
    assert json.loads((cand / load_manifest(cand).eval["gate"]["decision"]).read_text())["passed"] is False, (
        res.output
    )


def test_gate_without_a_serving_checkpoint_is_one_line(tmp_path, tiny_data):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "manifest.json").write_text("{}")
    (tmp_path / "c" / "config.json").write_text("{}")
    res = runner.invoke(_app(), ["gate", str(tmp_path / "c"), "--data", str(tiny_data)])
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0
    assert "no serving checkpoint in the registry" in res.output


def _registered_outside(base_model_dir, tmp_path, data_dir, version: str):
    """`keel checkpoints add /some/dir`: a version whose folder is not under the checkpoints dir."""
    from keel.store import registry

    base = _served_copy(base_model_dir, tmp_path / "base")
    (tmp_path / "elsewhere").mkdir()
    folder = _served_copy(base_model_dir, tmp_path / "elsewhere" / version)
    (folder / "manifest.json").write_text(json.dumps({"version": version, "parent": "base", "stage": "cpt"}))
    db = _registry(data_dir)
    try:
        registry.ensure_base_registered(db, base)
        registry.add(db, folder)
    finally:
        db.close()
    return base, folder


def test_gate_resolves_a_version_through_the_registry_before_any_scoring(
    base_model_dir, tiny_data, tmp_path, isolated_settings
):
    """A version registered from outside the checkpoints dir is found by its registered path, and every
    argument is checked before the baseline is scored (it used to score it for 10 minutes, then fail)."""
    base, folder = _registered_outside(base_model_dir, tmp_path, isolated_settings, "cpt200")
    # resolved: the error is about the policy (checked next), not about an unknown checkpoint
    res = runner.invoke(
        _app(), ["gate", "cpt200", "--data", str(tiny_data), "--policy", str(tmp_path / "nope.yaml")]
    )
    assert res.exit_code == 1 and "gate policy not found" in res.output, res.output
    shutil.rmtree(folder)
    res = runner.invoke(_app(), ["gate", "cpt200", "--data", str(tiny_data)])
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0, res.output
    assert f"registered at {folder}, but that folder is not there" in res.output
    res = runner.invoke(_app(), ["gate", "cpt2OO", "--data", str(tiny_data)])
    assert res.exit_code == 1 and "not a checkpoint folder nor a registered version" in res.output
    assert not (base / "eval").exists(), "the baseline was scored before the arguments were checked"


BAD_INPUTS = {
    "missing column": (
        "cmmlu/test/agronomy.csv",
        ",Question,A,B,C,Answer\n0,q,a,b,c,A\n",
        "agronomy.csv: missing column 'D'",
    ),
    "answer outside A-D": (
        "cmmlu/test/agronomy.csv",
        ",Question,A,B,C,D,Answer\n0,q,a,b,c,NA,F\n",
        "agronomy.csv: row 1: answer 'F' is not one of A-D",
    ),
    "empty subject file": ("mmlu/test/anatomy_test.csv", "", "anatomy_test.csv: no questions"),
    "short MMLU row": ("mmlu/test/anatomy_test.csv", "q,a,b,c,A\n", "anatomy_test.csv: expected 6 columns"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_are_one_line_errors(tmp_path, tiny_data, case):
    rel, text, message = BAD_INPUTS[case]
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "manifest.json").write_text("{}")
    (tiny_data / rel).write_text(text, encoding="utf-8")
    res = runner.invoke(_app(), ["run", str(tmp_path / "ck"), "--data", str(tiny_data)])
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0, res.output
    assert message in res.output
    assert not (tmp_path / "ck" / "eval").exists()  # nothing half-written


def test_checkpoint_without_manifest_is_one_line(tmp_path, tiny_data):
    (tmp_path / "nomanifest").mkdir()
    res = runner.invoke(_app(), ["run", str(tmp_path / "nomanifest"), "--data", str(tiny_data)])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "nomanifest: no manifest.json" in res.output


def test_none_and_na_options_are_text_not_missing(tmp_path, tiny_data):
    """The tiny MMLU rows have options "None" and "NA": they parse as text, the run gets past reading."""
    from training.eval.data import load_benchmark

    b = load_benchmark(tiny_data / "mmlu", "mmlu")
    assert b.subjects["anatomy"].test[0].choices == ("4", "3", "None", "NA")
