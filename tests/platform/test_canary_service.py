"""The canary in the platform (issue 27) on a real database and checkpoint folders, with the engine launch
replaced (the split itself is tested in tests/serving/test_canary_split.py): an empty-answer candidate is
stopped and rejected by itself, an identical one promoted through the promotion service, and every bad
start is refused with one line while serving stays as it was."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from flywheel.canary import CanaryConfig
from serving.engine.pool import CANDIDATE, CHAMPION, Endpoint, EnginePool


@pytest.fixture
def setup(tmp_path, base_model_dir):
    from keel.checkpoints.promotion import PromotionService
    from keel.config import load_settings
    from keel.store import registry
    from keel.store.db import Database

    from tests.flywheel.test_lineage import _checkpoint

    settings = load_settings(overrides=[f"data_dir={tmp_path / 'data'}"])
    db = Database(settings.db_path)
    ck = tmp_path / "data" / "checkpoints"
    registry.ensure_base_registered(db, _checkpoint(base_model_dir, ck / "base", {"version": "base"}))
    registry.add(db, _checkpoint(base_model_dir, ck / "cand", {"version": "cand", "parent": "base"}))
    yield db, PromotionService(db, None)
    db.close()


def _service(db, promotions, cfg, retired: list, swapping=lambda: False):
    from keel.checkpoints.canary import CanaryService

    pool = EnginePool()
    pool.endpoints = [Endpoint("http://champion", "base")]

    async def launch(version, path):
        return [Endpoint("http://candidate", version)]

    async def retire(eps):
        retired.extend(eps)

    return CanaryService(db, pool, promotions, cfg, launch, retire, swapping=swapping), pool


def _log(db, rid: str, arm: str, version: str, text: str) -> None:
    db.execute(
        "INSERT INTO requests (request_id, created_at, checkpoint_version, arm, route, status_code, "
        "response_text, completion_text, latency_ms) VALUES (?, ?, ?, ?, 'domain', 200, ?, ?, 400)",
        [rid, datetime.now(UTC), version, arm, text, text],
    )


async def _same_answers_until_decided(db, svc, canary: dict) -> str:
    """40 requests alternating between the arms, every answer the same; then wait for the decision."""
    for i in range(40):
        arm = CANDIDATE if i % 2 else CHAMPION
        _log(db, f"r{i}", arm, "cand" if arm == CANDIDATE else "base", "the same answer")
    await asyncio.wait_for(svc.done.wait(), 30)
    return canary["canary_id"]


def test_an_empty_answer_candidate_is_stopped_and_rejected(setup):
    from keel.store import aliases, canaries, registry

    db, promotions = setup
    cfg = CanaryConfig(min_requests=10, check_every_s=0.05, max_window_s=60)
    retired: list = []

    async def main():
        svc, pool = _service(db, promotions, cfg, retired)
        c = await svc.start("cand", 0.3, by="tester")
        assert {e.arm for e in pool.endpoints} == {CHAMPION, CANDIDATE}
        for i in range(60):  # live traffic: the candidate's share answers empty
            arm = CANDIDATE if i % 3 == 0 else CHAMPION
            _log(db, f"r{i}", arm, "cand" if arm == CANDIDATE else "base", "" if arm == CANDIDATE else "ok")
        await asyncio.wait_for(svc.done.wait(), 30)
        return c["canary_id"], pool

    cid, pool = asyncio.run(main())
    row = canaries.get(db, cid)
    assert row["status"] == "rejected" and "error_rate" in row["reason"], row
    assert row["figures"]["n_candidate"] == 20 and row["figures"]["outcome"] == "stop"
    assert [e.url for e in pool.endpoints] == ["http://champion"] and [e.url for e in retired] == [
        "http://candidate"
    ]
    assert registry.get(db, "cand").status == "rejected" and aliases.get(db) == "base"  # no swap
    from keel.cli.lineage import _version_text
    from keel.store.lineage import of_version

    lines = "\n".join(_version_text(of_version(db, "cand")))  # what `keel lineage cand` prints
    assert "canary beside base on 30%: rejected after 20 / 40 requests  error_rate" in lines, lines


def test_an_identical_candidate_is_promoted_at_the_end_of_its_window(setup):
    from keel.store import aliases, canaries

    db, promotions = setup
    cfg = CanaryConfig(min_requests=10, check_every_s=0.05, max_requests=20)

    async def main():
        svc, _ = _service(db, promotions, cfg, [])
        c = await svc.start("cand", 0.5, by="tester")
        return await _same_answers_until_decided(db, svc, c)

    cid = asyncio.run(main())
    assert canaries.get(db, cid)["status"] == "promoted"
    assert aliases.get(db) == "cand"  # through the promotion service (offline here: the registry moves)


def test_bad_starts_are_refused_and_serving_stays(setup):
    from keel.checkpoints.canary import CanaryError
    from keel.store import canaries, registry

    db, promotions = setup
    cfg = CanaryConfig(check_every_s=60)

    async def main():
        svc, pool = _service(db, promotions, cfg, [])
        for kw, msg in (
            ({"version": "cand", "share": 1.0}, "between 0 and 1"),
            ({"version": "nope"}, "unknown version"),
            ({"version": "base"}, "already serving"),
        ):
            with pytest.raises(CanaryError, match=msg):
                await svc.start(**kw)
        registry.set_status(db, "cand", "rejected")
        with pytest.raises(CanaryError, match="--force"):
            await svc.start("cand")
        busy, _ = _service(db, promotions, cfg, [], swapping=lambda: True)
        with pytest.raises(CanaryError, match="swap is in progress"):
            await busy.start("cand", force=True)
        assert [e.url for e in pool.endpoints] == ["http://champion"]
        await svc.start("cand", force=True)
        with pytest.raises(CanaryError, match="is running"):
            await svc.start("cand", force=True)
        await svc.close()  # the platform stops mid-canary
        return pool

    pool = asyncio.run(main())
    assert canaries.list_canaries(db)[0]["status"] == "interrupted"
    assert [e.url for e in pool.endpoints] == ["http://champion"]


def test_a_hand_started_canary_sets_its_own_window(setup):
    """`keel canary start V --max-requests 20 --window 60`: the window is this canary's, the policy the
    platform's (the default window, 400 requests or 30 min, would still be running here)."""
    from keel.checkpoints.canary import CanaryError
    from keel.store import aliases, canaries

    db, promotions = setup
    cfg = CanaryConfig()  # min_requests 20, max_requests 400, checked every 10 s

    async def main():
        svc, pool = _service(db, promotions, cfg, [])
        for window, msg in (
            ({"alpha": 0.5}, "can be set per canary"),
            (
                {"max_requests": 0},
                r"canary window: max_requests: Input should be greater than or equal to 1$",
            ),
        ):
            with pytest.raises(CanaryError, match=msg):
                await svc.start("cand", 0.5, window=window)
        assert [e.url for e in pool.endpoints] == ["http://champion"]  # nothing launched
        window = {"min_requests": 10, "max_requests": 20, "max_window_s": 60, "check_every_s": 0.05}
        c = await svc.start("cand", 0.5, window=window)
        assert svc.status()["config"]["max_requests"] == 20 and svc.cfg.max_requests == 400
        return await _same_answers_until_decided(db, svc, c)

    cid = asyncio.run(main())
    row = canaries.get(db, cid)
    assert row["status"] == "promoted" and row["figures"]["n_candidate"] == 20, row
    assert aliases.get(db) == "cand"


def test_a_candidate_the_judge_scores_lower_is_stopped_on_the_judge_score(setup):
    """The judged simulation's `score` feedback reaches the decision: both arms answer, with no error and
    the same latency, thumbs and edits, but the judge scores the candidate's answers lower. The scores go
    through the feedback endpoint's own record and store (the simulation's POST /v1/feedback path)."""
    import random

    from keel.store import canaries
    from keel.store.feedback import DuckFeedbackStore

    from serving.feedback.service import FeedbackService, to_record
    from serving.gateway.auth import Principal

    db, promotions = setup
    cfg = CanaryConfig(min_requests=10, check_every_s=0.05, max_window_s=60)
    store, sim = DuckFeedbackStore(db), Principal(key_id="k-sim", name="simulate")
    rng = random.Random(3)

    async def main():
        svc, _ = _service(db, promotions, cfg, [])
        c = await svc.start("cand", 0.5, by="tester")
        for i in range(80):
            arm = CANDIDATE if i % 2 else CHAMPION
            _log(db, f"r{i}", arm, "cand" if arm == CANDIDATE else "base", "an answer")
            db.execute("UPDATE requests SET key_id = 'k-sim' WHERE request_id = ?", [f"r{i}"])
            score = rng.uniform(0.05, 0.25) if arm == CANDIDATE else rng.uniform(0.35, 0.6)
            fb = FeedbackService.parse(
                json.dumps({"type": "score", "request_id": f"r{i}", "score": score}).encode()
            )
            store.add(to_record(fb, sim))
        await asyncio.wait_for(svc.done.wait(), 30)
        return c["canary_id"]

    cid = asyncio.run(main())
    row = canaries.get(db, cid)
    assert row["status"] == "rejected" and "judge_score" in row["reason"], row
    judge = {s["name"]: s for s in row["figures"]["signals"]}["judge_score"]
    assert judge["candidate"] < 0.3 < judge["champion"] and judge["worse"]
    rows = canaries.arm_rows(db, datetime(2000, 1, 1, tzinfo=UTC), ("cand", "base"))
    assert all(r["judge"] is not None for r in rows)
    # a score trains nothing: mining reads thumbs, edits, regenerations and choices only
    assert db.fetchall("SELECT count(*) FROM feedback WHERE kind = 'score'")[0][0] == 80


def test_score_feedback_is_validated():
    from serving.errors import APIError
    from serving.feedback.service import FeedbackService

    ok = FeedbackService.parse(b'{"type": "score", "request_id": "r1", "score": 0.25}')
    assert ok.score == 0.25
    for body, param in (
        (b'{"type": "score", "request_id": "r1", "score": 1.5}', "score"),
        (b'{"type": "score", "request_id": "r1", "score": "high"}', "score"),
        (b'{"type": "score", "request_id": "r1", "score": NaN}', None),  # not JSON: refused as such
        (b'{"type": "score", "request_id": "r1"}', "score"),
        (b'{"type": "scores", "request_id": "r1", "score": 0.1}', "type"),
    ):
        with pytest.raises(APIError) as e:
            FeedbackService.parse(body)
        assert e.value.status == 400 and e.value.param == param, (body, e.value.message)


def test_a_promote_decision_whose_promotion_is_refused_is_recorded_as_failed(setup, base_model_dir):
    """A candidate that failed its offline gates may be canaried with --force, but the canary's promote
    decision does not force the promotion: the row says failed with the refusal, and the champion serves."""
    from keel.store import aliases, canaries, registry

    from tests.flywheel.test_lineage import _checkpoint

    db, promotions = setup
    gated = {"version": "gated", "parent": "base", "eval": {"gate": {"passed": False, "decision": "x.json"}}}
    registry.add(db, _checkpoint(base_model_dir, db.path.parent / "checkpoints" / "gated", gated))
    cfg = CanaryConfig(min_requests=10, check_every_s=0.05, max_requests=20)

    async def main():
        svc, _ = _service(db, promotions, cfg, [])
        c = await svc.start("gated", 0.5, force=True, by="tester")
        for i in range(40):
            arm = CANDIDATE if i % 2 else CHAMPION
            _log(db, f"r{i}", arm, "gated" if arm == CANDIDATE else "base", "the same answer")
        await asyncio.wait_for(svc.done.wait(), 30)
        return c["canary_id"]

    row = canaries.get(db, asyncio.run(main()))
    assert (
        row["status"] == "failed"
        and "promotion refused" in row["reason"]
        and "failed its gates" in row["reason"]
    )
    assert row["figures"]["outcome"] == "promote"  # what the test decided stays on the row
    assert aliases.get(db) == "base"
