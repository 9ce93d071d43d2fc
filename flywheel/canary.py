"""The canary's sequential decision: is the candidate arm worse than the champion arm, on the same live
traffic, watched continuously? Pure statistics over per-request observations; the platform feeds it rows
and acts on the verdict.

Why a mixture SPRT (mSPRT) and not a repeated z-test: the canary is looked at after every batch of
requests and stops as soon as it can, and a fixed-n test checked again and again rejects far more often
than its alpha. The mSPRT of Johari, Pekelis & Walsh ("Always valid inference", 2017; the test behind
Optimizely's stats engine) gives, for the difference of the arms' means ``d = candidate - champion``, a
likelihood ratio mixed over ``d ~ N(0, tau^2)``:

    Lambda = sqrt(s^2 / (s^2 + tau^2)) * exp(tau^2 * dhat^2 / (2 s^2 (s^2 + tau^2))),   s^2 = v1/n1 + v2/n2

which is a martingale under ``d = 0``: the chance that it *ever* exceeds ``1/alpha`` is at most alpha
(Ville's inequality), however often it is checked. Inverting it gives a confidence sequence for ``d``
that holds at every look. Each guarded signal gets ``alpha / k`` (Bonferroni over k signals), so the
chance of stopping a candidate that is no different on every signal stays at most alpha; the variance is
estimated (plug-in), so that guarantee is asymptotic and ``tests/flywheel/test_canary.py`` checks it by
simulation (1,000 seeded null canaries).

Signals per request: error (an error status or an empty answer, as the watch counts it), thumbs down,
regenerated, edited (rates: bad when higher), the judge's score where the simulation gives one (bad when
lower) and latency (log milliseconds: bad when higher). Outcomes:

- ``stop``: a guarded signal's confidence sequence lies wholly on the bad side (after ``min_requests``
  on each arm): the candidate leaves rotation, rejected with that reason;
- ``promote``: the window (time or requests) is over and no guarded signal is worse; or sooner, with
  ``promote_early``, once every guarded signal's sequence shows the candidate at most ``margin`` worse;
- ``inconclusive``: the window is over without ``min_requests`` on each arm: ``on_inconclusive`` decides;
- ``continue``: none of these yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from flywheel.config import check_known
from flywheel.watch import failed

# signal → (higher is worse?, the natural scale of a difference worth seeing: the mixture's tau)
SIGNALS: dict[str, tuple[bool, float]] = {
    "error_rate": (True, 0.10),
    "thumbs_down_rate": (True, 0.10),
    "regeneration_rate": (True, 0.10),
    "edit_rate": (True, 0.10),
    "judge_score": (False, 0.10),
    "log_latency": (True, 0.25),
}


class CanaryConfig(BaseModel):
    """How a candidate proves itself on a share of live traffic beside the champion."""

    # on by default; a cycle whose last window of traffic could not fill this one (a quiet nightly run, a
    # demo after its simulation ended) skips it with that reason instead of waiting it out
    enabled: bool = Field(
        True,
        description="A cycle's candidate that passed its gates serves a canary before promotion (skipped "
        "when the last max_window_s of traffic × share is below min_requests).",
    )
    share: float = Field(0.2, gt=0, lt=1, description="Share of conversations the candidate serves (sticky).")
    min_requests: int = Field(20, ge=1, description="Fewest requests on each arm before a signal can decide.")
    max_requests: int = Field(400, ge=1, description="The window ends once the candidate served this many.")
    max_window_s: float = Field(1800.0, gt=0, description="The window ends after this long at the latest.")
    check_every_s: float = Field(10.0, gt=0, description="How often the running canary is decided.")
    alpha: float = Field(
        0.05, gt=0, lt=1, description="Chance of stopping a candidate no worse than the champion."
    )
    guarded: list[str] = Field(
        default_factory=lambda: list(SIGNALS), description="Signals that stop the candidate when worse."
    )
    margin: float = Field(
        0.05,
        ge=0,
        description="promote_early: how much worse (in the signal's units) still counts as no worse.",
    )
    promote_early: bool = Field(False, description="Promote before the window ends once no-worse is shown.")
    on_inconclusive: Literal["promote", "reject"] = Field(
        "reject", description="What a window that ends without enough requests on both arms decides."
    )

    @field_validator("guarded")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return check_known(v, SIGNALS, "canary signal")


@dataclass
class ArmSignal:
    """Running sums of one signal on one arm (a rate's observations are 0/1)."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        self.total += x
        self.squares += x * x

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def variance(self, binary: bool) -> float:
        if binary:  # smoothed so that an arm with no event (or only events) still has a variance
            p = (self.total + 0.5) / (self.n + 1)
            return p * (1 - p)
        if self.n < 2:
            return 1.0
        m = self.total / self.n
        return max((self.squares - self.n * m * m) / (self.n - 1), 1e-6)


def msprt(
    champion: ArmSignal, candidate: ArmSignal, tau: float, alpha: float, binary: bool
) -> tuple[float, float, float, float]:
    """(difference candidate - champion, always-valid p-value, lower and upper bound of the 1-alpha
    confidence sequence) at this look."""
    d = (candidate.mean or 0.0) - (champion.mean or 0.0)
    s2 = champion.variance(binary) / champion.n + candidate.variance(binary) / candidate.n
    t2 = tau * tau
    log_lambda = 0.5 * math.log(s2 / (s2 + t2)) + t2 * d * d / (2 * s2 * (s2 + t2))
    p = min(1.0, math.exp(-log_lambda))
    half = math.sqrt(2 * s2 * (s2 + t2) / t2 * (math.log(1 / alpha) + 0.5 * math.log((s2 + t2) / s2)))
    return d, p, d - half, d + half


@dataclass
class SignalFigures:
    name: str
    champion: float | None
    candidate: float | None
    n_champion: int
    n_candidate: int
    difference: float | None = None
    p: float | None = None
    low: float | None = None  # the confidence sequence of candidate - champion
    high: float | None = None
    worse: bool = False
    no_worse: bool = False  # within the margin on the bad side, shown


@dataclass
class CanaryVerdict:
    outcome: Literal["continue", "stop", "promote", "inconclusive"]
    reason: str
    signals: list[SignalFigures] = field(default_factory=list)
    n_champion: int = 0
    n_candidate: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "signals": [asdict(s) for s in self.signals]}


class CanaryTally:
    """The two arms' running sums, fed one request row at a time (the platform reads rows as they come)."""

    def __init__(self) -> None:
        self.arms: dict[str, dict[str, ArmSignal]] = {
            arm: {s: ArmSignal() for s in SIGNALS} for arm in ("champion", "candidate")
        }
        self.requests = {"champion": 0, "candidate": 0}

    def add(self, arm: str, row: dict[str, Any]) -> None:
        """``row``: a request-log row plus ``thumbs_down``/``regenerated``/``edited`` (bools) and ``judge``
        (the simulation's score, or None). Out-of-scope requests never reach an engine: left out."""
        if row.get("route") == "out_of_scope":
            return
        a = self.arms[arm]
        self.requests[arm] += 1
        bad = failed(row)
        a["error_rate"].add(float(bad))
        a["thumbs_down_rate"].add(float(bool(row.get("thumbs_down"))))
        a["regeneration_rate"].add(float(bool(row.get("regenerated"))))
        a["edit_rate"].add(float(bool(row.get("edited"))))
        if row.get("judge") is not None:
            a["judge_score"].add(float(row["judge"]))
        if not bad and row.get("latency_ms") is not None:
            a["log_latency"].add(math.log(max(float(row["latency_ms"]), 1.0)))

    def extend(self, arm: str, rows: Iterable[dict[str, Any]]) -> None:
        for r in rows:
            self.add(arm, r)


def decide(tally: CanaryTally, cfg: CanaryConfig, elapsed_s: float) -> CanaryVerdict:
    """The decision at this look (valid however often it is called)."""
    alpha = cfg.alpha / max(1, len(cfg.guarded))
    figures, worse, unshown = [], [], []
    for name in cfg.guarded:
        higher_bad, tau = SIGNALS[name]
        binary = name.endswith("_rate")
        ch, ca = tally.arms["champion"][name], tally.arms["candidate"][name]
        f = SignalFigures(name, ch.mean, ca.mean, ch.n, ca.n)
        if ch.n >= cfg.min_requests and ca.n >= cfg.min_requests:
            f.difference, f.p, f.low, f.high = msprt(ch, ca, tau, alpha, binary)
            # the bad side: candidate higher (rates, latency) or lower (judge score)
            f.worse = f.low > 0 if higher_bad else f.high < 0
            f.no_worse = f.high <= cfg.margin if higher_bad else f.low >= -cfg.margin
            if f.worse:
                worse.append(f)
            if not f.no_worse:
                unshown.append(name)
        elif ca.n or ch.n:
            unshown.append(name)
        figures.append(f)
    n_ch, n_ca = tally.requests["champion"], tally.requests["candidate"]
    verdict = CanaryVerdict("continue", "collecting", figures, n_ch, n_ca)
    if worse:
        verdict.outcome = "stop"
        verdict.reason = "; ".join(
            f"{f.name} {_fmt(f.candidate)} vs {_fmt(f.champion)} (always-valid p={f.p:.2g}, n={f.n_candidate}/"
            f"{f.n_champion})"
            for f in worse
        )
        return verdict
    enough = n_ch >= cfg.min_requests and n_ca >= cfg.min_requests
    over = elapsed_s >= cfg.max_window_s or n_ca >= cfg.max_requests
    if over and enough:
        verdict.outcome, verdict.reason = "promote", "no guarded signal worse by the end of the window"
    elif over:
        verdict.outcome = "inconclusive"
        verdict.reason = (
            f"the window ended with {n_ca} candidate and {n_ch} champion requests (need {cfg.min_requests} "
            f"each): policy says {cfg.on_inconclusive}"
        )
    elif cfg.promote_early and enough and not unshown:
        verdict.outcome = "promote"
        verdict.reason = f"every guarded signal shown at most {cfg.margin:g} worse"
    return verdict


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"
