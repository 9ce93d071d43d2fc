"""Watch after promotion: is the new champion worse live than the one it replaced, on the same routes?

After a swap, the new champion's requests in the watch window are compared with the previous champion's
requests on the same routes (its last ``baseline_window_s`` before the swap). Signals per request:
- failed: an error status, an error, or an empty answer from the engine (a model that stops at once);
- thumbs down: the request was rated down;
- regenerated: the user asked for another answer;
- latency (ms).
Rates use a one-sided two-proportion z-test (new > old); latency a one-sided Mann–Whitney U test
(normal approximation). A signal is *significantly worse* when p < ``alpha`` and the effect is at least
the configured minimum (an absolute rate increase, or a ratio of median latencies), with at least
``min_requests`` on each side. Pure over dicts: the platform reads the rows and acts on the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, Field


class WatchConfig(BaseModel):
    """When and how the platform watches a new champion (and rolls it back by itself)."""

    enabled: bool = Field(True, description="Watch every promotion; roll back when significantly worse.")
    window_s: float = Field(1800.0, gt=0, description="How long after the swap the new champion is watched.")
    baseline_window_s: float = Field(
        86400.0,
        gt=0,
        description="The previous champion's requests compared with: this long before the swap.",
    )
    check_every_s: float = Field(30.0, gt=0, description="How often the running watch is evaluated.")
    min_requests: int = Field(20, ge=1, description="Fewest requests on each side before a signal counts.")
    alpha: float = Field(0.01, gt=0, lt=1, description="One-sided significance level of each test.")
    min_rate_increase: float = Field(
        0.10,
        ge=0,
        description="Smallest absolute rise of a rate (errors, thumbs down, regenerations) that counts.",
    )
    min_latency_ratio: float = Field(
        1.5, ge=1, description="Smallest new/old ratio of median latency that counts."
    )
    stop_early: bool = Field(
        True, description="Roll back as soon as a signal is significantly worse, before the window ends."
    )


@dataclass
class Signal:
    name: str
    new: float | None
    old: float | None
    n_new: int
    n_old: int
    p: float | None
    worse: bool
    note: str = ""


@dataclass
class Verdict:
    worse: bool
    signals: list[Signal] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        bad = [s for s in self.signals if s.worse]
        if not bad:
            return "no signal significantly worse"
        return "; ".join(_describe(s) for s in bad)

    def to_dict(self) -> dict[str, Any]:
        return {
            "worse": self.worse,
            "reason": self.reason,
            "routes": self.routes,
            "signals": [asdict(s) for s in self.signals],
        }


def _describe(s: Signal) -> str:
    if s.name == "latency_ms":
        return f"median latency {s.new:.0f} ms vs {s.old:.0f} ms (Mann-Whitney p={s.p:.2g}, n={s.n_new}/{s.n_old})"
    return f"{s.name} {s.new:.1%} vs {s.old:.1%} (z-test p={s.p:.2g}, n={s.n_new}/{s.n_old})"


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def proportion_worse_p(k_new: int, n_new: int, k_old: int, n_old: int) -> float:
    """One-sided p-value of H1: rate_new > rate_old (pooled two-proportion z-test)."""
    pooled = (k_new + k_old) / (n_new + n_old)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_new + 1 / n_old))
    if se == 0:
        return 1.0 if k_new / n_new <= k_old / n_old else 0.0
    z = (k_new / n_new - k_old / n_old) / se
    return 1.0 - _phi(z)


def mann_whitney_greater_p(new: list[float], old: list[float]) -> float:
    """One-sided p-value of H1: new tends to be larger than old (normal approximation, tie-corrected)."""
    n1, n2 = len(new), len(old)
    ranked = sorted([(v, 0) for v in new] + [(v, 1) for v in old])
    ranks = [0.0] * len(ranked)
    ties = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        r = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[k] = r
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, ranked, strict=True) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (u1 - n1 * n2 / 2 - 0.5) / math.sqrt(var)  # continuity correction
    return 1.0 - _phi(z)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def failed(row: dict[str, Any]) -> bool:
    status = row.get("status_code") or 200
    if status >= 400 or row.get("error"):
        return True
    own = row.get("completion_text")
    text = own if own is not None else row.get("response_text")
    return row.get("route") != "out_of_scope" and not (text or "").strip()


def compare(
    new_rows: Iterable[dict[str, Any]],
    old_rows: Iterable[dict[str, Any]],
    cfg: WatchConfig,
    thumbs_down: set[str] = frozenset(),
    regenerated: set[str] = frozenset(),
) -> Verdict:
    """Rows: request-log rows (request_id, route, status_code, error, completion_text, latency_ms).
    Only routes both champions served are compared; out_of_scope never reaches the engine, so it is left out."""
    new = [r for r in new_rows if r.get("route") != "out_of_scope"]
    old = [r for r in old_rows if r.get("route") != "out_of_scope"]
    routes = sorted({str(r.get("route")) for r in new} & {str(r.get("route")) for r in old})
    new = [r for r in new if str(r.get("route")) in routes]
    old = [r for r in old if str(r.get("route")) in routes]
    signals = []
    for name, pred in (
        ("error_rate", failed),
        ("thumbs_down_rate", lambda r: r["request_id"] in thumbs_down),
        ("regeneration_rate", lambda r: r["request_id"] in regenerated),
    ):
        k_new, k_old = sum(map(pred, new)), sum(map(pred, old))
        if len(new) < cfg.min_requests or len(old) < cfg.min_requests:
            signals.append(Signal(name, None, None, len(new), len(old), None, False, "too few requests"))
            continue
        rn, ro = k_new / len(new), k_old / len(old)
        p = proportion_worse_p(k_new, len(new), k_old, len(old))
        worse = p < cfg.alpha and rn - ro >= cfg.min_rate_increase
        signals.append(Signal(name, rn, ro, len(new), len(old), p, worse))
    lat_new = [float(r["latency_ms"]) for r in new if r.get("latency_ms") is not None and not failed(r)]
    lat_old = [float(r["latency_ms"]) for r in old if r.get("latency_ms") is not None and not failed(r)]
    if len(lat_new) < cfg.min_requests or len(lat_old) < cfg.min_requests:
        signals.append(
            Signal("latency_ms", None, None, len(lat_new), len(lat_old), None, False, "too few requests")
        )
    else:
        mn, mo = _median(lat_new), _median(lat_old)
        p = mann_whitney_greater_p(lat_new, lat_old)
        worse = p < cfg.alpha and mo > 0 and mn / mo >= cfg.min_latency_ratio
        signals.append(Signal("latency_ms", mn, mo, len(lat_new), len(lat_old), p, worse))
    return Verdict(any(s.worse for s in signals), signals, routes)
