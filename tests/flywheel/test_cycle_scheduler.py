"""The cycle's APScheduler job: fires on a short interval, persists in the data dir, is timezone-aware,
and a run while a cycle is busy is refused (not queued)."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from zoneinfo import ZoneInfo

from keel.cycle.scheduler import JOB_ID, CycleScheduler

from flywheel.cycle import CycleBusy
from flywheel.cycle_config import ScheduleConfig


class FakeService:
    def __init__(self, busy: bool = False):
        self.starts: list[str] = []
        self.busy = busy
        self.fired = threading.Event()

    def start(self, trigger: str):
        self.starts.append(trigger)
        self.fired.set()
        if self.busy:
            raise CycleBusy("cycle-running-1")
        return type("C", (), {"cycle_id": f"c{len(self.starts)}"})()


def _run(coro):
    return asyncio.run(coro)


def test_job_fires_on_a_short_interval_and_persists(tmp_path):
    svc = FakeService()
    cfg = ScheduleConfig(enabled=True, interval_s=1)

    async def main():
        s = CycleScheduler(svc, cfg, tmp_path)
        s.start()
        try:
            assert s.next_run() is not None
            for _ in range(40):
                if len(svc.starts) >= 2:
                    break
                await asyncio.sleep(0.1)
        finally:
            s.stop()

    _run(main())
    assert svc.starts[:2] == ["schedule", "schedule"]
    assert (tmp_path / "scheduler.sqlite").exists()

    async def again():  # a restart finds the stored job (the schedule survives restarts)
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        store = SQLAlchemyJobStore(url=f"sqlite:///{tmp_path / 'scheduler.sqlite'}")
        store.start(None, "default")  # type: ignore[arg-type]
        jobs = store.get_all_jobs()
        store.shutdown()
        return jobs

    jobs = _run(again())
    assert [j.id for j in jobs] == [JOB_ID]


def test_cron_is_read_in_the_configured_timezone(tmp_path):
    cfg = ScheduleConfig(enabled=True, cron="30 2 * * *", timezone="Asia/Shanghai")

    async def main():
        s = CycleScheduler(FakeService(), cfg, tmp_path)
        s.start()
        try:
            return s.next_run()
        finally:
            s.stop()

    nxt = datetime.fromisoformat(_run(main()))
    local = nxt.astimezone(ZoneInfo("Asia/Shanghai"))
    assert (local.hour, local.minute) == (2, 30)
    assert nxt.utcoffset().total_seconds() == 8 * 3600


def test_disabled_schedule_removes_the_stored_job(tmp_path):
    async def main(enabled):
        s = CycleScheduler(FakeService(), ScheduleConfig(enabled=enabled, cron="0 3 * * *"), tmp_path)
        s.start()
        try:
            return s.next_run()
        finally:
            s.stop()

    assert _run(main(True)) is not None
    assert _run(main(False)) is None


def test_a_busy_cycle_refuses_the_scheduled_run(tmp_path):
    svc = FakeService(busy=True)

    async def main():
        s = CycleScheduler(svc, ScheduleConfig(enabled=True, interval_s=1), tmp_path)
        s.start()
        try:
            for _ in range(30):
                if svc.fired.is_set():
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.2)
            return s.running
        finally:
            s.stop()

    assert _run(main()) is True  # the refusal is logged; the scheduler keeps running
    assert svc.starts and svc.starts[0] == "schedule"


def test_a_scheduled_run_that_cannot_start_is_a_failed_cycle_row(tmp_path):
    """The real service over a real DuckDB: nothing serves yet and the configured model folder is gone, so
    the scheduled start raises. The run is not only logged: it is a failed cycle (trigger ``schedule``)
    with its error, and the count /metrics reads."""
    import yaml
    from keel.checkpoints.promotion import PromotionService
    from keel.config import load_settings
    from keel.cycle.service import CycleService
    from keel.store import cycles
    from keel.store.db import Database

    cfg = tmp_path / "keel.yaml"
    gone = tmp_path / "model-removed"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "keel"), "model": {"path": str(gone)}}))
    settings = load_settings(cfg)
    db = Database(settings.db_path)
    svc = CycleService(settings, db, PromotionService(db, None))

    async def main():
        s = CycleScheduler(svc, ScheduleConfig(enabled=True, interval_s=1), tmp_path / "keel")
        s.start()
        try:
            for _ in range(50):
                if svc.store.list(5):
                    break
                await asyncio.sleep(0.1)
        finally:
            s.stop()

    try:
        assert cycles.scheduled_failures(db) == 0
        _run(main())
        rows = svc.list()
        assert rows, "the failed scheduled run left no cycle row"
        c = rows[-1]
        assert (c["trigger"], c["status"]) == ("schedule", "failed")
        assert "model folder not found" in c["error"] and str(gone) in c["error"], c["error"]
        assert c["finished_at"] is not None and svc.store.running() is None  # nothing left "running"
        assert cycles.scheduled_failures(db) == len(rows)
    finally:
        db.close()
