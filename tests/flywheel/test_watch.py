"""The watch's decision on request rows (pure logic; the live rollback is in test_serving_to_training)."""

from __future__ import annotations

import random

from flywheel.watch import WatchConfig, compare, mann_whitney_greater_p, proportion_worse_p

CFG = WatchConfig(min_requests=20, alpha=0.01, min_rate_increase=0.1, min_latency_ratio=1.5)


def rows(
    prefix: str, n: int, *, empty: float = 0.0, latency: float = 800.0, route: str = "chat", seed: int = 0
):
    rng = random.Random(seed)
    return [
        {
            "request_id": f"{prefix}{i}",
            "route": route if i % 3 else "domain",
            "status_code": 200,
            "error": None,
            "completion_text": "" if rng.random() < empty else "an answer",
            "latency_ms": rng.gauss(latency, latency * 0.1),
        }
        for i in range(n)
    ]


def test_a_champion_that_answers_empty_is_worse_on_errors():
    v = compare(rows("n", 30, empty=1.0, latency=50), rows("o", 200, seed=1), CFG)
    assert v.worse and [s.name for s in v.signals if s.worse] == ["error_rate"]
    assert "error_rate 100.0% vs 0.0%" in v.reason and v.routes == ["chat", "domain"]


def test_the_same_model_is_not_worse():
    v = compare(rows("n", 60, empty=0.05, seed=2), rows("o", 200, empty=0.05, seed=3), CFG)
    assert not v.worse and all(s.p is not None for s in v.signals), v.to_dict()


def test_thumbs_down_regenerations_and_latency_count():
    new, old = rows("n", 40, latency=2400, seed=4), rows("o", 100, seed=5)
    down = {r["request_id"] for r in new[:20]} | {"o1", "o2"}
    regen = {r["request_id"] for r in new[:12]}
    v = compare(new, old, CFG, thumbs_down=down, regenerated=regen)
    assert {s.name for s in v.signals if s.worse} == {"thumbs_down_rate", "regeneration_rate", "latency_ms"}


def test_small_or_unshared_samples_decide_nothing():
    assert not compare(rows("n", 5, empty=1.0), rows("o", 200), CFG).worse  # too few new requests
    other_route = compare(rows("n", 50, empty=1.0, route="x"), rows("o", 200, route="y"), CFG)
    assert other_route.routes == ["domain"]  # only the route both served is compared
    out_of_scope = [{**r, "route": "out_of_scope", "completion_text": None} for r in rows("n", 50)]
    assert not compare(out_of_scope, rows("o", 200), CFG).worse


def test_tests_match_their_textbook_values():
    from scipy.stats import mannwhitneyu

    a = [random.Random(6).gauss(100, 10) for _ in range(40)]
    b = [random.Random(7).gauss(104, 10) for _ in range(50)]
    assert abs(mann_whitney_greater_p(b, a) - mannwhitneyu(b, a, alternative="greater").pvalue) < 1e-3
    # 10/50 vs 2/50: pooled 0.12, se 0.0650, z = 2.462, one-sided p = 0.0069
    assert abs(proportion_worse_p(10, 50, 2, 50) - 0.0069) < 1e-4
