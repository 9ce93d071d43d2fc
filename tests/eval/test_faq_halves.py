"""The FAQ's dev and test halves (issue 28, item 8): fixed, disjoint, about even, and the per-half figure
is the gate's own paired delta on that half's answers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from training.eval.heldout import domain_heldout, faq_half

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.faq_halves import halves  # noqa: E402


def test_halves_split_the_real_faq_evenly_and_never_move(shared_data):
    answers = domain_heldout(shared_data / "domain" / "tidb-docs-zh", include_docs=False).parts["faq_answers"]
    sides = [faq_half(t.id) for t in answers]
    assert set(sides) == {"dev", "test"}
    assert 0.4 < sides.count("test") / len(sides) < 0.6
    assert sides == [faq_half(t.id) for t in answers]  # a hash, not a draw


def _ev(nll) -> dict:
    docs = [
        {"id": f"faq_answers/faq/{i}", "nll": float(x), "tokens": 50, "bytes": 200} for i, x in enumerate(nll)
    ]
    return {"domain": {"version": "d1", "docs": docs}}


def test_the_halves_of_an_eval_are_the_halves_of_the_faq(shared_data):
    """The eval JSON names a FAQ answer ``faq_answers/<id>``; it falls in the half of its own id."""
    from bench.faq_halves import item_id

    answers = domain_heldout(shared_data / "domain" / "tidb-docs-zh", include_docs=False).parts["faq_answers"]
    for t in answers[:20]:
        assert item_id(f"faq_answers/{t.id}") == t.id
    assert item_id("en/3") == "en/3"


def test_a_change_in_one_half_shows_in_that_half_only():
    rng = np.random.default_rng(0)
    nll = rng.normal(200, 20, 200)
    test = np.array([faq_half(f"faq/{i}") == "test" for i in range(200)])
    cand = np.where(test, nll * 0.8, nll)  # only the test half's answers got 20% cheaper
    rows = halves(_ev(nll), _ev(cand))
    assert rows["test"]["delta"] == pytest.approx(-20.0, abs=0.01) and rows["test"]["ci"][1] < 0
    assert rows["dev"]["delta"] == pytest.approx(0.0, abs=1e-9)
    assert rows["dev"]["n"] + rows["test"]["n"] == rows["whole"]["n"] == 200
    assert -20 < rows["whole"]["delta"] < 0
