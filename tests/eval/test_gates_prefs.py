"""The preference-margin gate: a feedback-trained candidate must prefer the held-out chosen answers more
than what serves; a cycle that held out no pairs is "not measured", never failed for it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pydantic import ValidationError

from tests.eval.test_gates_stages import BASE, rows
from training.eval.gates import POLICY_DIR, GateRule, compare, decide, load_policy

rng = np.random.default_rng(3)
N = 30
MARGIN = rng.normal(-5.0, 3.0, N)


def with_prefs(ev: dict, margins, sha: str = "s" * 64) -> dict:
    ev = copy.deepcopy(ev)
    ev["prefs"] = {
        "sha256": sha,
        "items": [{"id": f"p{i}", "margin": float(m), "win": float(m > 0)} for i, m in enumerate(margins)],
    }
    return ev


def policy():
    p = load_policy(POLICY_DIR / "cycle-demo.yaml")
    p.gates = {k: g for k, g in p.gates.items() if not g.metric.startswith("answers")}
    return p


def test_a_dpo_candidate_that_widens_the_margin_passes_and_one_that_does_not_fails():
    base = with_prefs(BASE, MARGIN)
    better = with_prefs(BASE, MARGIN + rng.normal(2.0, 0.5, N))
    d = decide(better, base, policy(), trained=["dpo"])
    g = rows(d)["prefs_gain"]
    assert d["passed"], d["reasons"]
    assert g["unit"] == "nats" and g["delta"] == pytest.approx(2.0, abs=0.4) and g["ci"][0] > 0
    assert "nats" in g["reason"]

    flat = with_prefs(BASE, MARGIN + rng.normal(0.0, 0.5, N))
    d = decide(flat, base, policy(), trained=["dpo"])
    assert not d["passed"] and any(r.startswith("prefs_gain: ") for r in d["reasons"])
    # a CPT-only candidate is not held to it
    assert rows(decide(flat, base, policy(), trained=["cpt"]))["prefs_gain"]["passed"]


def test_no_held_out_pairs_is_not_measured_and_one_sided_or_different_pairs_fail():
    d = decide(BASE, BASE, policy(), trained=["dpo"])
    g = rows(d)["prefs_gain"]
    assert g["passed"] and "not measured" in g["reason"]
    assert "prefs.margin" not in compare(BASE, BASE, policy())

    d = decide(with_prefs(BASE, MARGIN), BASE, policy(), trained=["dpo"])
    assert not d["passed"] and "prefs missing from the baseline eval" in rows(d)["prefs_gain"]["reason"]
    d = decide(
        with_prefs(BASE, MARGIN + 3, sha="t" * 64), with_prefs(BASE, MARGIN), policy(), trained=["kto"]
    )
    assert "scored different pairs" in rows(d)["prefs_gain"]["reason"]

    both = compare(with_prefs(BASE, MARGIN + 1), with_prefs(BASE, MARGIN), policy())
    assert both["prefs.margin"]["delta"] == pytest.approx(1.0) and both["prefs.win"]["unit"] == "points"


def test_a_margin_gate_takes_point_thresholds_only():
    with pytest.raises(ValidationError, match="does not apply to prefs.margin"):
        GateRule(metric="prefs.margin", min_fall_pct=1.0)
    GateRule(metric="prefs.win", max_drop_points=1.0)
