"""General bits/byte gated per language: Chinese gains must not hide English forgetting."""

from __future__ import annotations

import numpy as np

from training.eval.gates import GatePolicy, GateRule, decide


def _eval(version: str, en_nll, zh_nll) -> dict:
    docs = [{"id": f"en/{i}", "nll": float(x), "tokens": 50, "bytes": 200} for i, x in enumerate(en_nll)]
    # Chinese dominates the tokens and bytes, as in the real general set (44k of 50k tokens)
    docs += [{"id": f"zh/{i}", "nll": float(x), "tokens": 400, "bytes": 1600} for i, x in enumerate(zh_nll)]
    return {
        "checkpoint": {"version": version},
        "fingerprint": "same",
        "complete": True,
        "general": {"version": "g1", "docs": docs},
    }


rng = np.random.default_rng(7)
EN, ZH = rng.normal(120, 10, 40), rng.normal(1500, 100, 40)
BASE = _eval("base", EN, ZH)
# English 10% worse on every text, Chinese 5% better: the combined figure still falls
CAND = _eval("cand", EN * 1.10, ZH * 0.95)


def _policy(*metrics: str) -> GatePolicy:
    return GatePolicy(
        require_significance=True,
        bootstrap_samples=500,
        gates={m.replace(".", "_"): GateRule(metric=m, max_rise_pct=3.0) for m in metrics},  # type: ignore[arg-type]
    )


def test_combined_general_figure_hides_english_forgetting():
    d = decide(CAND, BASE, _policy("general.bpb"))
    assert d["passed"], d["reasons"]


def test_per_language_gates_catch_it():
    d = decide(CAND, BASE, _policy("general_en.bpb", "general_zh.bpb"))
    by = {g["gate"]: g for g in d["gates"]}
    assert not d["passed"]
    assert not by["general_en_bpb"]["passed"] and by["general_en_bpb"]["delta"] > 9
    assert by["general_zh_bpb"]["passed"] and by["general_zh_bpb"]["delta"] < -4
    assert by["general_en_bpb"]["n"] == 40


def test_a_language_missing_from_the_eval_is_an_error_not_a_pass():
    only_en = _eval("base", EN, [])
    d = decide(only_en, only_en, _policy("general_zh.bpb"))
    assert not d["passed"] and "no zh texts" in d["reasons"][0]
