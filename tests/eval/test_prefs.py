"""The preference margin on held-out mined pairs (training/eval/prefs.py): what it scores, on a real model."""

from __future__ import annotations

import json

import pytest

from training.eval.data import EvalDataError
from training.eval.prefs import encode, load_pairs, run_prefs

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
GOOD = "The capital of France is Paris."
BAD = "zxq vlorp 7%% banana the the the ;;"


def pair(prompt, chosen, rejected) -> dict:
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


@pytest.fixture
def pairs_file(tmp_path):
    p = tmp_path / "prefs.jsonl"
    rows = [
        pair(PROMPT, GOOD, BAD),
        pair([{"role": "user", "content": "Say hello."}], "Hello! How can I help you today?", BAD),
        pair(PROMPT, BAD, GOOD),  # a pair the model should lose
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_bad_pair_files_are_one_line_errors(tmp_path):
    f = tmp_path / "p.jsonl"
    with pytest.raises(EvalDataError, match="not found"):
        load_pairs(f)
    f.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(EvalDataError, match=r"p\.jsonl:1: 'prompt' must be a list"):
        load_pairs(f)
    f.write_text(json.dumps(pair(PROMPT, "a", "")) + "\n")
    with pytest.raises(EvalDataError, match="'rejected' must be an assistant message"):
        load_pairs(f)
    f.write_text("")
    with pytest.raises(EvalDataError, match="no preference pairs"):
        load_pairs(f)


def test_the_answer_is_scored_as_the_assistant_turn_of_the_chat_template(scoring_model):
    tok = scoring_model.tokenizer
    head, tail = encode(tok, PROMPT, GOOD)
    whole = tok.apply_chat_template([*PROMPT, {"role": "assistant", "content": GOOD}], tokenize=False)
    assert tok.decode(head + tail) == whole
    assert GOOD in tok.decode(tail) and "capital of France?" not in tok.decode(tail)


def test_margins_prefer_the_sensible_answer_and_are_the_log_probability_difference(scoring_model, pairs_file):
    res = run_prefs(load_pairs(pairs_file), sm=scoring_model)
    items = res["items"]
    assert [i["win"] for i in items] == [1.0, 1.0, 0.0]
    for i in items:
        assert i["margin"] == pytest.approx(i["chosen_lp"] - i["rejected_lp"])
        assert i["chosen_lp"] < 0 and i["rejected_lp"] < 0 and i["chosen_tokens"] > 3
    assert items[0]["margin"] == pytest.approx(-items[2]["margin"])  # the same pair, swapped
    assert res["summary"]["n"] == 3 and res["summary"]["win"] == pytest.approx(2 / 3)
    assert len(res["sha256"]) == 64


@pytest.mark.slow
def test_vllm_scores_the_same_margins_as_transformers(scoring_model, vllm_scorer, pairs_file):
    ps = load_pairs(pairs_file)
    ref, mine = run_prefs(ps, sm=scoring_model), run_prefs(ps, scorer=vllm_scorer)
    for r, m in zip(ref["items"], mine["items"], strict=True):
        assert m["chosen_lp"] == pytest.approx(r["chosen_lp"], rel=1e-3, abs=0.05)
        assert m["rejected_lp"] == pytest.approx(r["rejected_lp"], rel=1e-3, abs=0.05)


@pytest.mark.slow
def test_the_gate_scores_both_checkpoints_on_the_same_held_out_pairs(
    tiny_data, base_model_dir, pairs_file, tmp_path
):
    """The whole eval path: the runner adds a prefs part to each checkpoint's eval JSON (the file in the
    fingerprint), and the gate compares the two pair by pair."""
    from tests.eval.test_cli import _candidate, _served_copy
    from training.eval.compare import compare_checkpoints
    from training.eval.config import EvalSettings
    from training.eval.gates import GatePolicy, GateRule

    base = _served_copy(base_model_dir, tmp_path / "base")
    cand = _candidate(base_model_dir, tmp_path / "cand")
    cfg = EvalSettings(data=tiny_data).eval_config(
        "gate", backend="transformers", threads=2, prefs=pairs_file
    )
    assert cfg.parts()[-1] == "prefs"
    assert (
        cfg.fingerprint()
        != EvalSettings(data=tiny_data).eval_config("gate", backend="transformers").fingerprint()
    )
    policy = GatePolicy(gates={"prefs": GateRule(metric="prefs.margin", max_drop_points=1000.0)})
    out = compare_checkpoints(cand, base, cfg, policy)
    evs = [
        json.loads(p.read_text())
        for p in (base / "eval" / "gate-0shot.json", cand / "eval" / "gate-0shot.json")
    ]
    assert all(e["complete"] and e["prefs"]["summary"]["n"] == 3 for e in evs)
    assert evs[0]["prefs"]["sha256"] == evs[1]["prefs"]["sha256"]
    [row] = out.decision["gates"]
    margins = [[i["margin"] for i in e["prefs"]["items"]] for e in evs]
    assert row["n"] == 3 and row["unit"] == "nats"
    assert row["delta"] == pytest.approx(sum(c - b for b, c in zip(*margins, strict=True)) / 3)
    assert row["delta"] != 0  # the candidate's weights differ
