"""The cycle's canary step on the platform (keel.cycle.steps.PlatformSteps.canary): on by default, skipped
with its reason when the last window's traffic could not fill the canary's share, and started with the
cycle's own window (a profile's) otherwise. The canary service is a stand-in here (its real-engine tests
are tests/swap/test_canary_live.py); the database and the traffic count are real."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
from keel.config import load_settings
from keel.cycle.steps import PlatformSteps
from keel.runtime import Runtime
from keel.store import canaries
from keel.store.db import Database

from flywheel.cycle import CycleRecord, Done, Skip, StepContext
from flywheel.cycle_config import CycleConfig
from tests.flywheel.planted import request


class StubCanaries:
    """Records how the step starts a canary and decides it at once (promoted)."""

    def __init__(self, db: Database):
        self.db, self.started = db, []
        self.done = threading.Event()
        self.done.set()

    async def start(self, version, share=None, *, by="", cycle_id=None, window=None, force=False):
        self.started.append({"version": version, "share": share, "by": by, "window": window})
        cid = canaries.start(self.db, version, "base", share, by, cycle_id)
        canaries.finish(self.db, cid, "promoted", "no worse on every guarded signal", {"n_candidate": 12})
        return {"canary_id": cid}


@pytest.fixture
def platform_steps(tmp_path):
    settings = load_settings(overrides=[f"data_dir={tmp_path / 'data'}"])
    db = Database(settings.db_path)
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    runtime = Runtime()
    runtime.loop = loop
    svc = StubCanaries(db)
    yield PlatformSteps(settings, db, None, None, runtime=runtime, canary=svc), svc, db
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)
    db.close()


def _ctx(canary: dict | None = None) -> StepContext:
    cfg = CycleConfig.model_validate({"stages": ["sft"], **({"canary": canary} if canary else {})})
    rec = CycleRecord("c1", "running", "cli", ["sft"], False, {})
    return StepContext(rec, cfg, threading.Event())


def _traffic(db: Database, n: int, minutes_ago: float) -> None:
    con = db.cursor()
    for i in range(n):
        request(con, f"r{minutes_ago}-{i}", "k", f"question {i}", "answer", 0, route="chat")
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    con.execute("UPDATE requests SET created_at = ? WHERE request_id LIKE ?", [at, f"r{minutes_ago}-%"])


def test_the_canary_is_on_by_default():
    assert CycleConfig().canary.enabled


def test_too_little_recent_traffic_skips_the_canary_with_its_reason(platform_steps):
    steps, svc, db = platform_steps
    _traffic(db, 300, minutes_ago=45)  # busy, but before the last 30-minute window
    _traffic(db, 60, minutes_ago=5)  # 60 x 20% = 12 < 20
    out = steps.canary(_ctx(), {"version": "cand"}, {"passed": True})
    assert isinstance(out, Skip) and not svc.started
    assert "60 requests in the last 1800 s" in out.reason and "would not reach 20" in out.reason
    assert out.output == {"recent_requests": 60}


def test_enough_traffic_starts_the_canary_with_the_cycles_own_window(platform_steps):
    steps, svc, db = platform_steps
    _traffic(db, 60, minutes_ago=2)  # a profile's short window: 60 x 25% = 15 >= 10
    window = {"share": 0.25, "min_requests": 10, "max_requests": 40, "max_window_s": 240}
    out = steps.canary(_ctx(window), {"version": "cand"}, {"passed": True})
    assert isinstance(out, Done) and out.output["decision"] == "promoted"
    [started] = svc.started
    assert started["share"] == 0.25 and started["by"] == "cycle"
    assert started["window"] == {"min_requests": 10, "max_requests": 40, "max_window_s": 240}
