"""How often the canary stops a candidate that is no different from the champion, when it is decided again
and again: the mixture SPRT (flywheel.canary) against a one-sided z-test at alpha/k repeated at every look.

    python bench/canary_false_stops.py --runs 1000 --look 20

Null canaries: both arms draw from the same distributions (error 5%, thumbs down 20%, regeneration 10%,
edit 5%, judge N(0.5, 0.15), log latency N(7, 0.4)); share 0.2; decided every ``--look`` requests up to the
window (300 candidate requests). Pure CPU, seconds.
"""

from __future__ import annotations

import argparse
import json
import math
from statistics import NormalDist

import numpy as np

from flywheel.canary import SIGNALS, CanaryConfig, CanaryTally, decide

RATES = {"error_rate": 0.05, "thumbs_down_rate": 0.2, "regeneration_rate": 0.1, "edit_rate": 0.05}


def _fill(tally: CanaryTally, obs: dict, cand: np.ndarray, end: int) -> None:
    for arm, mask in (("candidate", cand[:end]), ("champion", ~cand[:end])):
        tally.requests[arm] = int(mask.sum())
        for name, x in obs.items():
            s, xs = tally.arms[arm][name], x[:end][mask]
            s.n, s.total, s.squares = len(xs), float(xs.sum()), float((xs * xs).sum())


def _naive_worse(tally: CanaryTally, cfg: CanaryConfig) -> bool:
    """A one-sided z-test per signal at alpha/k, as a fixed-n test would be run at every look."""
    z_crit = NormalDist().inv_cdf(1 - cfg.alpha / len(cfg.guarded))
    for name in cfg.guarded:
        a, b = tally.arms["champion"][name], tally.arms["candidate"][name]
        if a.n < cfg.min_requests or b.n < cfg.min_requests:
            continue
        binary = name.endswith("_rate")
        se = math.sqrt(a.variance(binary) / a.n + b.variance(binary) / b.n)
        d = (b.mean or 0) - (a.mean or 0)
        if (d if SIGNALS[name][0] else -d) / se > z_crit:
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--look", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args()
    cfg = CanaryConfig(share=0.2, min_requests=20, max_requests=300, alpha=0.05)
    rng = np.random.default_rng(a.seed)
    total = int(cfg.max_requests / cfg.share)
    msprt_stops = naive_stops = 0
    for _ in range(a.runs):
        cand = rng.random(total) < cfg.share
        obs = {name: (rng.random(total) < p).astype(float) for name, p in RATES.items()}
        obs["judge_score"] = np.clip(rng.normal(0.5, 0.15, total), 0, 1)
        obs["log_latency"] = rng.normal(7.0, 0.4, total)
        tally, stopped, naive = CanaryTally(), False, False
        for end in range(a.look, total + 1, a.look):
            _fill(tally, obs, cand, end)
            naive = naive or _naive_worse(tally, cfg)
            v = decide(tally, cfg, elapsed_s=0)
            stopped = stopped or v.outcome == "stop"
            if v.outcome != "continue":
                break
        msprt_stops += stopped
        naive_stops += naive
    print(
        json.dumps(
            {
                "runs": a.runs,
                "look_every": a.look,
                "alpha": cfg.alpha,
                "msprt_false_stop_rate": msprt_stops / a.runs,
                "repeated_z_false_stop_rate": naive_stops / a.runs,
            }
        )
    )


if __name__ == "__main__":
    main()
