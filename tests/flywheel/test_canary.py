"""The canary's sequential test (flywheel.canary): valid under continuous monitoring, quick on a broken
candidate, silent on an identical one."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.canary import SIGNALS, CanaryConfig, CanaryTally, decide


def _row(rng, empty: bool = False) -> dict:
    return {
        "route": "domain",
        "status_code": 200,
        "completion_text": "" if empty else "an answer",
        "latency_ms": float(rng.lognormal(7.0, 0.4)),
        "thumbs_down": bool(rng.random() < 0.2),
        "regenerated": bool(rng.random() < 0.1),
        "edited": bool(rng.random() < 0.05),
        "judge": None if empty else float(np.clip(rng.normal(0.5, 0.15), 0, 1)),
    }


def test_an_empty_answer_candidate_is_stopped_early_on_errors():
    cfg = CanaryConfig(share=0.2, min_requests=20)
    rng = np.random.default_rng(0)
    tally = CanaryTally()
    stopped_at = None
    for i in range(5000):
        arm = "candidate" if rng.random() < cfg.share else "champion"
        tally.add(arm, _row(rng, empty=arm == "candidate"))
        if i % 5 == 0:
            v = decide(tally, cfg, elapsed_s=i)
            if v.outcome == "stop":
                stopped_at = tally.requests["candidate"]
                break
    assert stopped_at is not None and stopped_at < 3 * cfg.min_requests, stopped_at
    assert "error_rate" in v.reason and "always-valid" in v.reason


def test_an_identical_candidate_runs_to_the_end_of_its_window_and_is_promoted():
    cfg = CanaryConfig(share=0.2, min_requests=20, max_requests=200)
    rng = np.random.default_rng(1)
    tally = CanaryTally()
    while True:
        arm = "candidate" if rng.random() < cfg.share else "champion"
        tally.add(arm, _row(rng))
        v = decide(tally, cfg, elapsed_s=0)
        assert v.outcome != "stop", v.reason
        if v.outcome != "continue":
            break
    assert v.outcome == "promote" and tally.requests["candidate"] == cfg.max_requests
    assert {s.name for s in v.signals} == set(SIGNALS)


def test_a_window_without_enough_requests_is_inconclusive_and_the_policy_decides():
    v = decide(CanaryTally(), CanaryConfig(on_inconclusive="promote"), elapsed_s=10_000)
    assert v.outcome == "inconclusive" and "policy says promote" in v.reason


def test_false_stop_rate_under_continuous_monitoring_is_at_most_alpha():
    """1,000 seeded canaries whose arms are the same, each decided after every 20 requests up to the
    window: the share ever stopped is at most alpha (a repeated fixed-n z-test would exceed it)."""
    cfg = CanaryConfig(share=0.2, min_requests=20, max_requests=300, alpha=0.05)
    rng = np.random.default_rng(2026)
    runs, total, look = 1000, 1500, 20
    rates = {"error_rate": 0.05, "thumbs_down_rate": 0.2, "regeneration_rate": 0.1, "edit_rate": 0.05}
    stopped = 0
    for _ in range(runs):
        cand = rng.random(total) < cfg.share
        obs = {name: (rng.random(total) < p).astype(float) for name, p in rates.items()}
        obs["judge_score"] = np.clip(rng.normal(0.5, 0.15, total), 0, 1)
        obs["log_latency"] = rng.normal(7.0, 0.4, total)
        tally = CanaryTally()
        for end in range(look, total + 1, look):
            for arm, mask in (("candidate", cand[:end]), ("champion", ~cand[:end])):
                tally.requests[arm] = int(mask.sum())
                for name, x in obs.items():
                    s = tally.arms[arm][name]
                    xs = x[:end][mask]
                    s.n, s.total, s.squares = len(xs), float(xs.sum()), float((xs * xs).sum())
            v = decide(tally, cfg, elapsed_s=0)
            if v.outcome == "stop":
                stopped += 1
                break
            if v.outcome != "continue":
                break
    assert stopped / runs <= cfg.alpha, stopped


def test_an_unknown_guarded_signal_is_a_config_error():
    with pytest.raises(ValueError, match="unknown canary signal 'thumbs'"):
        CanaryConfig(guarded=["thumbs"])
