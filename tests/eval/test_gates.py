"""Gate logic on synthetic score vectors: pass, significant fail, non-significant drop, partial evals."""

from __future__ import annotations

import numpy as np
import pytest

from training.eval.data import EvalDataError
from training.eval.gates import DEFAULT_POLICY, GatePolicy, GateRule, decide, delta, load_policy


def fake_eval(version: str, mmlu_correct, mmlu_p, domain_nll, general_nll, complete=True) -> dict:
    """An eval JSON with only what gates read: per-item MC records and per-doc losses."""
    items = [
        {"id": f"s/{i}", "subject": "s", "correct": bool(c), "p_correct": float(p)}
        for i, (c, p) in enumerate(zip(mmlu_correct, mmlu_p, strict=True))
    ]

    def docs(nll):
        return {
            "version": "v1",
            "docs": [
                {"id": f"d{i}", "nll": float(x), "tokens": 100, "bytes": 300} for i, x in enumerate(nll)
            ],
        }

    ev = {
        "checkpoint": {"version": version},
        "name": "gate-0shot",
        "fingerprint": "same",
        "complete": complete,
        "missing": [] if complete else ["cmmlu"],
        "mmlu": {"items": items},
        "cmmlu": {"items": items},
        "domain": docs(domain_nll),
        "general": docs(general_nll),
    }
    return ev


rng = np.random.default_rng(123)
N = 400
BASE_CORRECT = rng.random(N) < 0.30
BASE_P = np.clip(rng.normal(0.30, 0.05, N), 0.01, 0.99)
BASE_DOM = rng.normal(300, 30, 60)
BASE_GEN = rng.normal(250, 25, 60)
BASE = fake_eval("base", BASE_CORRECT, BASE_P, BASE_DOM, BASE_GEN)

POLICY = GatePolicy(
    require_significance=True,
    bootstrap_samples=1000,
    gates={
        "mmlu_acc": GateRule(metric="mmlu.acc", max_drop_points=2.0),
        "mmlu_score": GateRule(metric="mmlu.score", max_drop_points=1.0),
        "domain_ppl": GateRule(metric="domain.ppl", min_fall_pct=2.0),
        "general_ppl": GateRule(metric="general.ppl", max_rise_pct=5.0),
    },
)


def by_gate(decision):
    return {g["gate"]: g for g in decision["gates"]}


def test_pass_when_domain_learned_and_general_kept():
    cand = fake_eval("cand", BASE_CORRECT, BASE_P + 0.002, BASE_DOM * 0.9, BASE_GEN * 1.001)
    d = decide(cand, BASE, POLICY)
    assert d["passed"], d["reasons"]
    g = by_gate(d)
    assert g["domain_ppl"]["delta"] < -2 and g["domain_ppl"]["significant"]
    assert g["mmlu_acc"]["delta"] == pytest.approx(0.0)
    assert g["mmlu_score"]["ci"][0] <= g["mmlu_score"]["delta"] <= g["mmlu_score"]["ci"][1]


def test_significant_drop_fails_with_reason():
    worse = BASE_CORRECT.copy()
    flip = np.flatnonzero(worse)[: int(0.5 * worse.sum())]  # lose half the correct answers: -15 points
    worse[flip] = False
    cand = fake_eval("cand", worse, BASE_P - 0.05, BASE_DOM * 0.9, BASE_GEN * 1.2)
    d = decide(cand, BASE, POLICY)
    g = by_gate(d)
    assert not d["passed"]
    assert not g["mmlu_acc"]["passed"] and g["mmlu_acc"]["significant"]
    assert g["mmlu_acc"]["delta"] == pytest.approx(-100 * len(flip) / N)
    assert g["mmlu_acc"]["ci"][1] < 0
    assert not g["general_ppl"]["passed"] and "rises more than" in g["general_ppl"]["reason"]
    assert any(r.startswith("mmlu_acc:") for r in d["reasons"])


def test_non_significant_drop_passes_only_when_significance_required():
    # Three items flip in opposite directions at random: a noisy, non-significant drop of > 2 points on 40 items.
    n = 40
    base_c = np.array([True] * 12 + [False] * 28)
    cand_c = base_c.copy()
    cand_c[[0, 1, 2, 3, 4]] = False
    cand_c[[20, 21]] = True  # net -3 items = -7.5 points
    base = fake_eval("base", base_c, np.full(n, 0.3), BASE_DOM, BASE_GEN)
    cand = fake_eval("cand", cand_c, np.full(n, 0.3), BASE_DOM * 0.9, BASE_GEN)
    dec = by_gate(decide(cand, base, POLICY))["mmlu_acc"]
    assert dec["delta"] == pytest.approx(-7.5)
    assert not dec["significant"] and dec["passed"] and "not significant" in dec["reason"]
    strict = POLICY.model_copy(update={"require_significance": False})
    dec2 = by_gate(decide(cand, base, strict))["mmlu_acc"]
    assert not dec2["passed"]


def test_domain_must_fall_enough():
    cand = fake_eval("cand", BASE_CORRECT, BASE_P, BASE_DOM * 0.995, BASE_GEN)
    g = by_gate(decide(cand, BASE, POLICY))["domain_ppl"]
    assert not g["passed"] and "must fall by at least 2%" in g["reason"]


def test_partial_or_mismatched_evals_never_pass():
    cand = fake_eval("cand", BASE_CORRECT, BASE_P, BASE_DOM * 0.8, BASE_GEN, complete=False)
    d = decide(cand, BASE, POLICY)
    assert not d["passed"] and "partial" in d["reasons"][0]
    other = fake_eval("cand", BASE_CORRECT[:-1], BASE_P[:-1], BASE_DOM * 0.8, BASE_GEN)
    d2 = decide(other, BASE, POLICY)
    assert not d2["passed"] and "different items" in by_gate(d2)["mmlu_acc"]["reason"]


def test_bootstrap_is_seeded_and_bpb_ignores_tokenizer():
    cand = fake_eval("cand", BASE_CORRECT, BASE_P + 0.01, BASE_DOM * 0.9, BASE_GEN)
    a, b = delta(cand, BASE, "mmlu.score", POLICY), delta(cand, BASE, "mmlu.score", POLICY)
    assert a == b
    for doc in cand["domain"]["docs"]:
        doc["tokens"] = 120  # another tokenizer
    assert "tokenizers differ" in delta(cand, BASE, "domain.ppl", POLICY)["error"]
    bpb = delta(cand, BASE, "domain.bpb", POLICY)
    assert bpb["delta"] == pytest.approx(-10.0)


def test_shipped_policy_loads_and_bad_policy_is_one_line(tmp_path):
    pol = load_policy(DEFAULT_POLICY)
    assert {g.metric for g in pol.gates.values()} >= {"mmlu.acc", "cmmlu.score", "domain.ppl", "general.ppl"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  x: {metric: domain.ppl, max_drop_points: 1}\n")
    with pytest.raises(EvalDataError, match=r"bad\.yaml: .*max_drop_points does not apply to domain\.ppl"):
        load_policy(bad)
