"""`keel eval run|gate` end to end on the embedded base and a candidate trained for a few steps."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from tests.eval.conftest import DOMAIN_ANSWER
from training.eval.manifest import read_manifest

runner = CliRunner()


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
    (dest / "manifest.json").write_text(json.dumps({"version": "cand-1", "parent": "base", "stage": "cpt"}))
    return dest


@pytest.mark.slow
def test_run_and_gate_end_to_end(base_model_dir, tiny_data, tmp_path, artifacts_dir):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    base = _served_copy(base_model_dir, tmp_path / "base")
    cand = _candidate(base_model_dir, tmp_path / "cand")

    res = runner.invoke(_app(), ["run", str(base), "--data", str(tiny_data)])
    assert res.exit_code == 0, res.output
    ev_path = base / "eval" / "gate-0shot.json"
    ev = json.loads(ev_path.read_text())
    assert ev["complete"] and ev["mmlu"]["summary"]["overall"]["n"] == 10
    assert ev["cmmlu"]["summary"]["overall"]["n"] == 10 and ev["domain"]["summary"]["docs"] == 1
    assert read_manifest(base)["eval"]["runs"]["gate-0shot"]["path"] == "eval/gate-0shot.json"

    res = runner.invoke(_app(), ["gate", str(cand), "--baseline", str(base), "--data", str(tiny_data)])
    assert res.exit_code in (0, 1), res.output
    m = read_manifest(cand)
    gate = m["eval"]["gate"]
    assert m["version"] == "cand-1" and gate["baseline"] == "base"
    decision = json.loads((cand / gate["decision"]).read_text())
    assert (res.exit_code == 0) == decision["passed"] == gate["passed"]
    rows = {g["gate"]: g for g in decision["gates"]}
    assert rows["domain_ppl"]["delta"] < 0  # trained on the held-out answer: perplexity fell
    assert (cand / gate["report"]).read_text().count("<tr>") > 6
    shutil.copy(cand / gate["png"], artifacts_dir / "eval-gate-e2e.png")


def test_bad_inputs_are_one_line_errors(tmp_path, tiny_data):
    (tmp_path / "nomanifest").mkdir()
    res = runner.invoke(_app(), ["run", str(tmp_path / "nomanifest"), "--data", str(tiny_data)])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "nomanifest: no manifest.json" in res.output
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "manifest.json").write_text("{}")
    (tiny_data / "cmmlu" / "test" / "agronomy.csv").write_text(",Question,A,B,C,D,Answer\n0,q,a,b,c,NA,F\n")
    res = runner.invoke(_app(), ["run", str(tmp_path / "ck"), "--data", str(tiny_data)])
    assert res.exit_code == 1 and "agronomy.csv: row 1: answer 'F' is not one of A-D" in res.output
