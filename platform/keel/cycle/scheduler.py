"""The nightly cycle: an APScheduler 3 AsyncIOScheduler inside the platform process.

The job store is SQLAlchemy over ``<data_dir>/scheduler.sqlite``, so the schedule (and a run missed while
the platform was down, within ``misfire_grace_s``) survives restarts. APScheduler stores a reference to
the job function, so the stored job is a module-level marker; the scheduler's own listener, which holds
its platform's cycle service, acts when the job has fired (no module-level lookup of the service). One
scheduler per job store. It only *starts* a cycle (a thread); a cycle already running refuses it. A run
that cannot start is recorded as a failed cycle (the cycle's own step failures already are).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from flywheel.cycle import CycleBusy
from flywheel.cycle_config import ScheduleConfig

log = logging.getLogger("keel.cycle")

JOB_ID = "keel-cycle"


def scheduled_cycle(key: str = "") -> None:
    """The persisted job: a marker that the schedule fired (``key``: the data dir, kept for stored jobs).
    CycleScheduler's listener starts the cycle."""


class CycleScheduler:
    def __init__(self, service, cfg: ScheduleConfig, data_dir: Path):
        self.service = service
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self.key = str(self.data_dir.resolve())
        self.scheduler = None

    @property
    def running(self) -> bool:
        return self.scheduler is not None and self.scheduler.running

    def trigger(self):
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        tz = ZoneInfo(self.cfg.timezone)
        if self.cfg.interval_s > 0:
            return IntervalTrigger(seconds=self.cfg.interval_s, timezone=tz)
        return CronTrigger.from_crontab(self.cfg.cron, timezone=tz)

    def start(self) -> None:
        """Call from inside the running event loop."""
        from apscheduler.events import EVENT_JOB_EXECUTED
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.data_dir.mkdir(parents=True, exist_ok=True)
        store = SQLAlchemyJobStore(url=f"sqlite:///{self.data_dir / 'scheduler.sqlite'}")
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": store},
            timezone=ZoneInfo(self.cfg.timezone),
            job_defaults={
                "coalesce": self.cfg.coalesce,
                "misfire_grace_time": self.cfg.misfire_grace_s,
                "max_instances": 1,
            },
        )
        self.scheduler.add_listener(self._fired, EVENT_JOB_EXECUTED)
        self.scheduler.start()
        if self.cfg.enabled:
            # An unchanged stored job keeps its next run time, so a run missed while the platform was down
            # still fires at start (within misfire_grace_s); a changed schedule replaces the job.
            existing = self.scheduler.get_job(JOB_ID)
            if existing is None or str(existing.trigger) != str(self.trigger()):
                self.scheduler.add_job(
                    scheduled_cycle,
                    self.trigger(),
                    id=JOB_ID,
                    args=[self.key],
                    replace_existing=True,
                    coalesce=self.cfg.coalesce,
                    misfire_grace_time=self.cfg.misfire_grace_s,
                    max_instances=1,
                )
            log.info(
                "cycle schedule: %s (%s), next run %s", self.describe(), self.cfg.timezone, self.next_run()
            )
        elif self.scheduler.get_job(JOB_ID) is not None:
            self.scheduler.remove_job(JOB_ID)

    def describe(self) -> str:
        return f"every {self.cfg.interval_s:g} s" if self.cfg.interval_s > 0 else f"cron {self.cfg.cron!r}"

    def next_run(self) -> str | None:
        if self.scheduler is None:
            return None
        job = self.scheduler.get_job(JOB_ID)
        t: datetime | None = getattr(job, "next_run_time", None) if job else None
        return t.isoformat() if t else None

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _fired(self, event) -> None:
        if event.job_id == JOB_ID:
            self.run_scheduled()

    def run_scheduled(self) -> None:
        """Start one cycle (trigger ``schedule``); a run that cannot start is a failed cycle row."""
        try:
            c = self.service.start("schedule")
            log.info("scheduled cycle %s started", c.cycle_id)
        except CycleBusy as e:
            log.info("scheduled cycle refused: %s", e)
        except Exception as e:
            # nobody is there to read a nightly failure: it becomes a failed cycle row (`keel cycle list`,
            # the console) and counts in /metrics (keel_cycle_scheduled_failures_total), not only a log line
            log.exception("scheduled cycle could not start")
            try:
                self.service.record_failure("schedule", f"{type(e).__name__}: {e}")
            except Exception:
                log.exception("scheduled cycle: the failure could not be recorded either")
