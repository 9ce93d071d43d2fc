"""Gates that fit what a candidate trained: CPT must lower domain bits/byte; a candidate that learnt only
from feedback (DPO here) is not held to that, and must still not regress."""

from __future__ import annotations

import numpy as np
import pytest

from training.checkpoint import Manifest, write_manifest
from training.eval.compare import trained_stages
from training.eval.gates import POLICY_DIR, GatePolicy, GateRule, decide, load_policy

rng = np.random.default_rng(7)
N, D = 300, 40
CORRECT = rng.random(N) < 0.3
P = np.clip(rng.normal(0.3, 0.05, N), 0.01, 0.99)
DOM = rng.normal(300, 30, D)
GEN = rng.normal(250, 25, D)


def fake_eval(p=P, dom=DOM, gen=GEN) -> dict:
    items = [
        {"id": f"s/{i}", "subject": "s", "correct": bool(c), "p_correct": float(x)}
        for i, (c, x) in enumerate(zip(CORRECT, p, strict=True))
    ]

    def docs(nll, ids):
        return {
            "version": "v1",
            "docs": [
                {"id": i, "nll": float(x), "tokens": 100, "bytes": 300} for i, x in zip(ids, nll, strict=True)
            ],
        }

    return {
        "checkpoint": {"version": "x"},
        "name": "gate-0shot",
        "fingerprint": "same",
        "complete": True,
        "missing": [],
        "mmlu": {"items": items},
        "cmmlu": {"items": items},
        "domain": docs(dom, [f"d{i}" for i in range(D)]),
        "general": docs(gen, [f"{'en' if i % 2 else 'zh'}/{i}" for i in range(D)]),
    }


BASE = fake_eval()


def demo_policy():
    """The shipped demo policy's gates on what these fake evals hold (the answers suite has its own tests)."""
    policy = load_policy(POLICY_DIR / "cycle-demo.yaml")
    policy.gates = {k: g for k, g in policy.gates.items() if not g.metric.startswith("answers")}
    return policy


def rows(decision) -> dict[str, dict]:
    return {g["gate"]: g for g in decision["gates"]}


def test_dpo_only_candidate_with_flat_domain_bpb_is_not_rejected_for_it():
    """The issue's case: DPO trained, nothing regressed, domain bits/byte flat (+0.01%)."""
    policy = demo_policy()
    cand = fake_eval(p=P + 0.001, dom=DOM * 1.0001, gen=GEN * 1.0002)

    d = decide(cand, BASE, policy, trained=["dpo"])
    assert d["passed"], d["reasons"]
    g = rows(d)
    assert not g["domain_bpb"]["required"] and "not required" in g["domain_bpb"]["reason"]
    assert g["domain_bpb_hold"]["required"] and g["domain_bpb_hold"]["passed"]
    assert d["trained"] == ["dpo"]

    # the same candidate had CPT trained (or nobody knows what it trained): the domain must fall
    for trained in (["cpt", "dpo"], None):
        d = decide(cand, BASE, policy, trained=trained)
        assert not d["passed"] and any(r.startswith("domain_bpb: ") for r in d["reasons"]), trained


def test_feedback_only_candidate_must_still_not_regress():
    policy = demo_policy()
    worse = fake_eval(dom=DOM * 1.08)  # domain bits/byte up 8%
    d = decide(worse, BASE, policy, trained=["kto"])
    assert not d["passed"] and any(r.startswith("domain_bpb_hold: ") for r in d["reasons"])


def test_min_gain_points_requires_a_significant_rise():
    policy = GatePolicy(
        require_significance=True,
        bootstrap_samples=500,
        gates={"gain": GateRule(metric="mmlu.score", min_gain_points=0.0, stages=["sft", "dpo", "kto"])},
    )
    better = fake_eval(p=P + 0.02)
    flat = fake_eval(p=P + rng.normal(0, 0.02, N))
    assert decide(better, BASE, policy, trained=["dpo"])["passed"]
    d = decide(flat, BASE, policy, trained=["dpo"])
    assert not d["passed"] and "gain: " in d["reasons"][0]
    assert decide(flat, BASE, policy, trained=["cpt"])["passed"]  # not a feedback stage: not required
    with pytest.raises(ValueError, match="min_gain_points does not apply to domain.bpb"):
        GateRule(metric="domain.bpb", min_gain_points=1.0)


def test_trained_stages_follow_the_manifests_back_to_the_baseline(tmp_path):
    serving = tmp_path / "serving"
    serving.mkdir()
    write_manifest(serving, Manifest(version="serving", stage="cpt"))
    parent = serving
    for stage in ("sft", "dpo", "kto"):
        folder = tmp_path / stage
        folder.mkdir()
        write_manifest(folder, Manifest(version=stage, stage=stage, parent_path=str(parent)))
        parent = folder
    assert trained_stages(tmp_path / "kto", serving) == ["sft", "dpo", "kto"]
    assert trained_stages(tmp_path / "dpo", tmp_path / "sft") == ["dpo"]
    other = tmp_path / "other"
    other.mkdir()
    assert trained_stages(tmp_path / "kto", other) is None  # not its ancestor: every gate binds


def with_answers(ev: dict, scores) -> dict:
    items = [{"id": f"q{i}", "score": float(x)} for i, x in enumerate(scores)]
    return {**ev, "answers": {"sha256": "frozen", "judge": {"metric": "chrf"}, "items": items}}


def test_feedback_only_candidate_that_answers_better_is_promoted_and_one_that_does_not_is_not():
    """The whole demo policy: a DPO-only candidate is judged by its answers and must regress nothing."""
    policy = load_policy(POLICY_DIR / "cycle-demo.yaml")
    answers = np.clip(rng.normal(0.35, 0.1, 40), 0, 1)
    base = with_answers(BASE, answers)
    flat = fake_eval(p=P + 0.001, dom=DOM * 1.0001, gen=GEN * 1.0002)

    better = decide(with_answers(flat, np.clip(answers + 0.05, 0, 1)), base, policy, trained=["dpo"])
    assert better["passed"], better["reasons"]
    assert rows(better)["answers_gain"]["required"] and rows(better)["answers_gain"]["passed"]

    same = decide(with_answers(flat, answers), base, policy, trained=["dpo"])
    assert not same["passed"] and [r.split(":")[0] for r in same["reasons"]] == ["answers_gain"]
    # a CPT-only candidate is not held to the answers gain (it must lower domain bits/byte instead)
    cpt = decide(with_answers(fake_eval(dom=DOM * 0.9), answers), base, policy, trained=["cpt"])
    assert cpt["passed"], cpt["reasons"]
    assert not rows(cpt)["answers_gain"]["required"]


def test_a_candidate_that_gains_in_chinese_but_loses_english_answers_is_stopped_by_answers_en():
    """The feedback lift's first cycle, in miniature: 24 Chinese questions a little better, 12 English ones
    much worse. The whole suite still rises; its English questions alone are significantly worse."""
    policy = load_policy(POLICY_DIR / "cycle-demo.yaml")
    zh, en = np.clip(rng.normal(0.02, 0.01, 24), 0, 1), np.clip(rng.normal(0.22, 0.05, 12), 0, 1)

    def ev(base_ev: dict, zh_scores, en_scores) -> dict:
        items = [{"id": f"zh{i}", "lang": "zh", "score": float(x)} for i, x in enumerate(zh_scores)]
        items += [{"id": f"en{i}", "lang": "en", "score": float(x)} for i, x in enumerate(en_scores)]
        return {**base_ev, "answers": {"sha256": "frozen", "judge": {"metric": "chrf"}, "items": items}}

    base = ev(BASE, zh, en)
    cpt = fake_eval(dom=DOM * 0.8)
    lost = decide(ev(cpt, zh + 0.3, en - 0.17), base, policy, trained=["cpt"])
    assert rows(lost)["answers"]["passed"], rows(lost)["answers"]  # overall the answers got better
    assert not lost["passed"] and [r.split(":")[0] for r in lost["reasons"]] == ["answers_en"]
    kept = decide(ev(cpt, zh + 0.3, en), base, policy, trained=["cpt"])
    assert kept["passed"], kept["reasons"]
    # a suite without English questions: answers_en is not measured, and passes
    zh_only = decide(ev(cpt, zh + 0.3, []), ev(BASE, zh, []), policy, trained=["cpt"])
    assert zh_only["passed"] and "not measured" in rows(zh_only)["answers_en"]["reason"], rows(zh_only)[
        "answers_en"
    ]
