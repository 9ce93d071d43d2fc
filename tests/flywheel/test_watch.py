"""The watch's decision on request rows (pure logic) and its platform side on a real database with an
offline promotion service. The live rollback (a real engine, traffic with feedback, the swap back checked by
the served output) is test_watch_live.py."""

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


def test_platform_watch_rolls_back_a_champion_that_answers_empty(tmp_path, base_model_dir):
    """The platform side on a real database file and real checkpoint folders: the watch reads the request
    log and feedback, finds the new champion's empty answers significantly worse than the previous
    champion's on the same routes, and rolls back through the promotion service (offline here: no engine,
    the registry and the champion alias move), recorded as a rollback by `watch` with its reason."""
    import asyncio
    import json
    from datetime import UTC, datetime, timedelta

    from keel.checkpoints.promotion import PromotionService
    from keel.checkpoints.watch import PromotionWatch
    from keel.config import load_settings
    from keel.store import aliases, registry
    from keel.store.db import Database
    from keel.store.watches import list_watches

    from tests.flywheel.test_lineage import _checkpoint

    settings = load_settings(overrides=[f"data_dir={tmp_path / 'data'}"])
    db = Database(settings.db_path)
    ck = tmp_path / "data" / "checkpoints"
    registry.ensure_base_registered(db, _checkpoint(base_model_dir, ck / "base", {"version": "base"}))
    registry.add(db, _checkpoint(base_model_dir, ck / "empty-1", {"version": "empty-1", "parent": "base"}))
    promo = PromotionService(db, None)
    asyncio.run(promo.promote("empty-1", by="tester"))
    swapped = datetime.now(UTC)

    def log(rid: str, version: str, text: str, at: datetime, route: str) -> None:
        db.execute(
            "INSERT INTO requests (request_id, created_at, checkpoint_version, route, status_code, "
            "response_text, completion_text, latency_ms) VALUES (?, ?, ?, ?, 200, ?, ?, 500)",
            [rid, at, version, route, text, text],
        )

    for i in range(40):  # the previous champion answered, an hour before the swap
        log(f"old-{i}", "base", "an answer", swapped - timedelta(hours=1), ("chat", "domain")[i % 2])
    db.execute(
        "INSERT INTO feedback (feedback_id, request_id, key_id, kind, rating, dedup_key) "
        "VALUES ('f1', 'old-1', 'k', 'thumbs', -1, 'f1')"
    )

    cfg = WatchConfig(window_s=30, check_every_s=0.2, min_requests=10)

    async def watch() -> None:
        w = PromotionWatch(db, promo, lambda: None, cfg)
        w.start("empty-1", "base", "swap-x")
        await asyncio.sleep(0.5)  # the first checks: too few new requests, nothing happens
        assert aliases.get(db) == "empty-1"
        for i in range(12):  # then the new champion answers empty
            log(f"new-{i}", "empty-1", "", datetime.now(UTC), ("chat", "domain")[i % 2])
        await asyncio.wait_for(w.task, 10)

    asyncio.run(watch())
    [w] = list_watches(db)
    assert w["status"] == "rolled_back" and w["previous"] == "base", w
    err = {s["name"]: s for s in w["verdict"]["signals"]}["error_rate"]
    assert err["worse"] and (err["new"], err["old"], err["n_new"], err["n_old"]) == (1.0, 0.0, 12, 40)
    assert aliases.get(db) == "base" == registry.serving(db)[0]
    [(kind, reason, by, swap)] = db.fetchall(
        "SELECT kind, reason, by_whom, swap_id FROM swaps WHERE kind = 'rollback'"
    )
    assert by == "watch" and reason.startswith("watch: empty-1 worse than base: error_rate 100.0% vs 0.0%")
    assert swap == w["rollback_swap"]
    assert json.loads(json.dumps(w["verdict"]))["worse"] is True
    db.close()


def test_a_swap_a_dead_platform_left_running_is_interrupted_at_start(tmp_path):
    """kill -9 mid-swap leaves its history row `running`; the next platform start says it was interrupted
    (the registry, which moves only after a swap succeeded, still names what serves)."""
    from keel.checkpoints.watch import PromotionWatch
    from keel.store import swaps
    from keel.store.db import Database

    db = Database(tmp_path / "keel.duckdb")
    done = swaps.start(db, "promote", "base", "v1", False, "tester", "first")
    swaps.finish(db, done, "succeeded", "in_place", 1.0, 0.0)
    cut = swaps.start(db, "promote", "v1", "v2", False, "cycle:c1", "gate passed")
    PromotionWatch(db, None, lambda: None, CFG)  # what `keel up` builds at start
    rows = {h["swap_id"]: h for h in swaps.history(db)}
    assert rows[done]["status"] == "succeeded"
    assert rows[cut]["status"] == "interrupted" and rows[cut]["finished_at"] is not None
    assert rows[cut]["reason"] == "gate passed; interrupted: the platform stopped during the swap"
    assert swaps.interrupt_running(db) == []  # once
    db.close()
