"""The cycle and step rows (the DuckDB CycleStore the flywheel runner writes through)."""

from __future__ import annotations

import json
from typing import Any

from flywheel.cycle import CycleRecord, StepRecord
from keel.store.db import Database

_C = "cycle_id, status, trigger, stages, dry_run, config, serving, outcome, error, report, started_at, finished_at"
_S = (
    "cycle_id, name, seq, status, started_at, finished_at, input_hash, output_hash, output, reason, error, "
    "attempts"
)


def _j(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def _cycle(r: tuple) -> CycleRecord:
    cid, status, trig, stages, dry, cfg, serving, outcome, err, report, start, end = r
    return CycleRecord(
        cycle_id=cid,
        status=status,
        trigger=trig,
        stages=_j(stages) or [],
        dry_run=bool(dry),
        config=_j(cfg) or {},
        serving=_j(serving) or {},
        outcome=outcome,
        error=err,
        report=report,
        started_at=start,
        finished_at=end,
    )


def _step(r: tuple) -> StepRecord:
    cid, name, seq, status, start, end, ih, oh, out, reason, err, attempts = r
    return StepRecord(cid, name, seq, status, start, end, ih, oh, _j(out) or {}, reason, err, attempts)


class DuckCycleStore:
    def __init__(self, db: Database):
        self.db = db

    def create(self, c: CycleRecord) -> None:
        self.db.execute(
            f"INSERT INTO cycles ({_C}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                c.cycle_id,
                c.status,
                c.trigger,
                json.dumps(c.stages),
                c.dry_run,
                json.dumps(c.config, default=str),
                json.dumps(c.serving, default=str),
                c.outcome,
                c.error,
                c.report,
                c.started_at,
                c.finished_at,
            ],
        )

    def update(self, c: CycleRecord) -> None:
        self.db.execute(
            "UPDATE cycles SET status = ?, outcome = ?, error = ?, report = ?, finished_at = ? WHERE cycle_id = ?",
            [c.status, c.outcome, c.error, c.report, c.finished_at, c.cycle_id],
        )

    def get(self, cycle_id: str) -> CycleRecord | None:
        rows = self.db.fetchall(f"SELECT {_C} FROM cycles WHERE cycle_id = ?", [cycle_id])
        return _cycle(rows[0]) if rows else None

    def running(self) -> CycleRecord | None:
        rows = self.db.fetchall(
            f"SELECT {_C} FROM cycles WHERE status = 'running' ORDER BY started_at LIMIT 1"
        )
        return _cycle(rows[0]) if rows else None

    def latest(self, status: str) -> CycleRecord | None:
        rows = self.db.fetchall(
            f"SELECT {_C} FROM cycles WHERE status = ? ORDER BY started_at DESC LIMIT 1", [status]
        )
        return _cycle(rows[0]) if rows else None

    def list(self, limit: int = 50) -> list[CycleRecord]:
        rows = self.db.fetchall(f"SELECT {_C} FROM cycles ORDER BY started_at DESC LIMIT ?", [limit])
        return [_cycle(r) for r in rows]

    def steps(self, cycle_id: str) -> list[StepRecord]:
        rows = self.db.fetchall(f"SELECT {_S} FROM cycle_steps WHERE cycle_id = ? ORDER BY seq", [cycle_id])
        return [_step(r) for r in rows]

    def save_step(self, s: StepRecord) -> None:
        self.db.execute(
            f"INSERT OR REPLACE INTO cycle_steps ({_S}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                s.cycle_id,
                s.name,
                s.seq,
                s.status,
                s.started_at,
                s.finished_at,
                s.input_hash,
                s.output_hash,
                json.dumps(s.output, default=str, ensure_ascii=False),
                s.reason,
                s.error,
                s.attempts,
            ],
        )


# ---- reads for /metrics ---------------------------------------------------------------------------------
def outcome_counts(db: Database) -> list[tuple[str, str, int]]:
    """(status, outcome, count) over every cycle."""
    return db.fetchall(
        "SELECT status, coalesce(outcome, ''), count(*) FROM cycles GROUP BY 1, 2 ORDER BY 1, 2"
    )


def scheduled_failures(db: Database) -> int:
    """Cycles the scheduler started (or failed to start) that ended failed."""
    return db.fetchall("SELECT count(*) FROM cycles WHERE trigger = 'schedule' AND status = 'failed'")[0][0]


def running_step(db: Database) -> tuple[str, float] | None:
    """The step a running cycle is in and how long it has run, or None."""
    rows = db.fetchall(
        "SELECT s.name, epoch(now()) - epoch(s.started_at) FROM cycles c JOIN cycle_steps s USING (cycle_id) "
        "WHERE c.status = 'running' AND s.status = 'running' ORDER BY s.seq DESC LIMIT 1"
    )
    return (rows[0][0], float(rows[0][1] or 0)) if rows else None


def last_finished_epoch(db: Database) -> float | None:
    rows = db.fetchall("SELECT max(epoch(finished_at)) FROM cycles WHERE finished_at IS NOT NULL")
    return float(rows[0][0]) if rows and rows[0][0] is not None else None


def step_durations(db: Database) -> list[tuple[str, str, float]]:
    """(name, status, seconds) of every finished step."""
    return db.fetchall(
        "SELECT name, status, epoch(finished_at) - epoch(started_at) FROM cycle_steps "
        "WHERE started_at IS NOT NULL AND finished_at IS NOT NULL"
    )
