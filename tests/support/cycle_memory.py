"""An in-memory CycleStore: the reference the DuckDB store mirrors, used by unit tests."""

from __future__ import annotations

import copy

from flywheel.cycle import CycleRecord, StepRecord


class MemoryCycleStore:
    def __init__(self) -> None:
        self.cycles: dict[str, CycleRecord] = {}
        self.step_rows: dict[tuple[str, str], StepRecord] = {}

    def create(self, cycle: CycleRecord) -> None:
        if cycle.cycle_id in self.cycles:
            raise ValueError(f"cycle {cycle.cycle_id} exists")
        self.cycles[cycle.cycle_id] = copy.deepcopy(cycle)

    def update(self, cycle: CycleRecord) -> None:
        self.cycles[cycle.cycle_id] = copy.deepcopy(cycle)

    def get(self, cycle_id: str) -> CycleRecord | None:
        c = self.cycles.get(cycle_id)
        return copy.deepcopy(c) if c else None

    def running(self) -> CycleRecord | None:
        return next((copy.deepcopy(c) for c in self.cycles.values() if c.status == "running"), None)

    def latest(self, status: str) -> CycleRecord | None:
        hits = [c for c in self.cycles.values() if c.status == status]
        return copy.deepcopy(max(hits, key=lambda c: c.started_at)) if hits else None

    def steps(self, cycle_id: str) -> list[StepRecord]:
        rows = [copy.deepcopy(s) for (cid, _), s in self.step_rows.items() if cid == cycle_id]
        return sorted(rows, key=lambda s: s.seq)

    def save_step(self, step: StepRecord) -> None:
        self.step_rows[(step.cycle_id, step.name)] = copy.deepcopy(step)
