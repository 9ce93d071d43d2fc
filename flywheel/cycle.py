"""The flywheel cycle: mine → snapshots → train → evaluate → gate → promote, as plain code over protocols.

Steps run in a fixed order; each has a row (start, end, status, input/output hashes, error) in a store:

    mine                      new requests + feedback → pairs, SFT and KTO examples
    snapshot:<stage>          the data a stage trains on (CPT: changed documents + replay; SFT; DPO; KTO)
    train:<stage>             from the serving checkpoint, or the previous trained stage (CPT → SFT → DPO → KTO)
    evaluate                  the last candidate and the serving checkpoint on the same items
    gate                      the policy's decision
    promote                   on pass: the swap; on fail: the rejection with the gate's reasons

Rules:
- skip: a step that has not enough data returns ``Skip(reason)``; a stage whose snapshot is skipped is not
  trained; with no candidate, evaluate/gate/promote are skipped too. The reason is recorded.
- fail: a step that raises stops the cycle with its error; nothing after it runs (serving untouched,
  since only the last step swaps).
- cancel: ``cancel(id)`` sets the cycle's event; steps see it (the wiring kills child processes), the
  cycle stops as ``cancelled`` before the next step.
- resume: a cycle that did not finish (interrupted by a restart, failed, cancelled) continues from its
  first incomplete step; completed steps are never run again, and the step that was running is told it
  is resumed (``ctx.resumed``) so training continues from its saved state.
- one at a time: a second cycle is refused with the running cycle's id (:class:`CycleBusy`).

flywheel imports neither keel, serving nor training: the platform passes the steps and the store.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from flywheel.config import check_known
from flywheel.cycle_config import STAGE_ORDER, CycleConfig
from flywheel.errors import FlywheelError
from flywheel.step_outputs import (
    CanaryOutput,
    EvaluateOutput,
    GateOutput,
    MineOutput,
    PromoteOutput,
    RouterOutput,
    SnapshotOutput,
    StepOutput,
    TrainOutput,
)

# ----------------------------------------------------------------------------------------------- records

CYCLE_STATUSES = ("running", "succeeded", "failed", "cancelled", "interrupted")
STEP_STATUSES = ("running", "done", "skipped", "failed", "cancelled", "interrupted")
FINISHED_STEP = ("done", "skipped")
RESUMABLE = ("interrupted", "failed", "cancelled")


class CycleError(FlywheelError, RuntimeError):
    """A cycle problem worth one line (over HTTP: a 400 the request caused)."""

    code = "cycle_refused"


class UnknownCycle(CycleError):
    """No cycle has that id."""

    status = 404
    code = "not_found"


class CycleBusy(CycleError):
    """Another cycle is running; ``cycle_id`` names it."""

    status = 409
    code = "cycle_running"

    def __init__(self, cycle_id: str):
        super().__init__(f"cycle {cycle_id} is running; wait for it, or `keel cycle cancel {cycle_id}`")
        self.cycle_id = cycle_id
        self.param = cycle_id


class Cancelled(CycleError):
    """Raised inside a step when its cycle was cancelled."""


@dataclass
class CycleRecord:
    cycle_id: str
    status: str
    trigger: str  # cli | api | schedule
    stages: list[str]
    dry_run: bool
    config: dict[str, Any]
    serving: dict[str, Any] = field(default_factory=dict)  # {version, path} when the cycle began
    outcome: str | None = None  # promoted | rejected | nothing_to_train | gated | dry_run
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("started_at", "finished_at"):
            d[k] = d[k].isoformat() if d[k] else None
        return d


@dataclass
class StepRecord:
    cycle_id: str
    name: str
    seq: int
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    input_hash: str | None = None
    output_hash: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None  # why it was skipped
    error: str | None = None
    attempts: int = 0

    @property
    def seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("started_at", "finished_at"):
            d[k] = d[k].isoformat() if d[k] else None
        d["seconds"] = self.seconds
        return d


# ------------------------------------------------------------------------------------------- protocols


@dataclass
class Done:
    """A step's result: JSON-able output (what later steps read) and its content hash, if it has one."""

    output: dict[str, Any] = field(default_factory=dict)
    hash: str | None = None


@dataclass
class Skip:
    reason: str
    output: dict[str, Any] = field(default_factory=dict)


Outcome = Done | Skip


@dataclass
class StepContext:
    cycle: CycleRecord
    config: CycleConfig
    cancel_event: threading.Event
    resumed: bool = False  # this step ran before in this cycle and did not finish
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # finished steps' outputs

    @property
    def cycle_id(self) -> str:
        return self.cycle.cycle_id

    @property
    def dry_run(self) -> bool:
        return self.cycle.dry_run

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled(f"cycle {self.cycle_id} was cancelled")


class CycleSteps(Protocol):
    """What the platform implements (each may raise; a raise fails the cycle)."""

    def serving(self) -> dict[str, Any]: ...  # {version, path} of what serves now

    def mine(self, ctx: StepContext) -> Outcome: ...

    def router(self, ctx: StepContext) -> Outcome: ...  # refit the intent router from route flags, gated

    def snapshot(self, ctx: StepContext, stage: str) -> Outcome: ...

    def train(self, ctx: StepContext, stage: str, snapshot: dict, parent: dict) -> Outcome: ...

    def evaluate(self, ctx: StepContext, candidate: dict, baseline: dict) -> Outcome: ...

    def gate(self, ctx: StepContext, candidate: dict, evaluation: dict) -> Outcome: ...

    def canary(self, ctx: StepContext, candidate: dict, gate: dict) -> Outcome: ...  # live traffic decides

    def promote(self, ctx: StepContext, candidate: dict, gate: dict) -> Outcome: ...

    def reject(self, ctx: StepContext, candidate: dict, gate: dict) -> Outcome: ...

    def finish(self, ctx: StepContext, cycle: CycleRecord, steps: list[StepRecord]) -> str | None:
        """Called once the cycle ends (any status): write the report; returns its path."""
        ...


class CycleStore(Protocol):
    """The cycle and step rows (DuckDB in the platform, a dict in tests)."""

    def create(self, cycle: CycleRecord) -> None: ...

    def update(self, cycle: CycleRecord) -> None: ...

    def get(self, cycle_id: str) -> CycleRecord | None: ...

    def running(self) -> CycleRecord | None: ...

    def latest(self, status: str) -> CycleRecord | None: ...

    def steps(self, cycle_id: str) -> list[StepRecord]: ...

    def save_step(self, step: StepRecord) -> None: ...


# ------------------------------------------------------------------------------------------------ plan


# ------------------------------------------------------------------------------------------ step table
# Every step kind once, in the order a cycle runs them: plan(), the runner's binding, the CLI and the report
# read this table, so a new step is one entry here plus its CycleSteps method (and a new stage one entry in
# cycle_config.STAGE_ORDER).

Binding = tuple[Callable[[], Outcome] | Skip, dict[str, Any]]


@dataclass(frozen=True)
class StepKind:
    kind: str
    doc: str
    output: type[StepOutput]
    bind: Callable[[CycleSteps, StepContext, str], Binding]  # the call (or a Skip) and its inputs
    per_stage: bool = False  # one step per selected stage: ``snapshot:cpt``, ``train:dpo``


def _last_trained(ctx: StepContext, stages: Iterable[str]) -> dict | None:
    for s in stages:
        out = ctx.outputs.get(f"train:{s}")
        if out and "skipped" not in out:
            return out
    return None


def _candidate(ctx: StepContext) -> dict | None:
    """The last stage that trained made the candidate."""
    return _last_trained(ctx, reversed(STAGE_ORDER))


def _parent(ctx: StepContext, stage: str) -> dict:
    """The checkpoint a stage starts from: the last stage before it that trained, else serving."""
    before = STAGE_ORDER[: STAGE_ORDER.index(stage)]  # type: ignore[arg-type]
    return _last_trained(ctx, reversed(before)) or ctx.cycle.serving


def _bind_mine(s: CycleSteps, ctx: StepContext, _: str) -> Binding:
    return (lambda: s.mine(ctx)), {"since_serving": ctx.cycle.serving}


def _bind_router(s: CycleSteps, ctx: StepContext, _: str) -> Binding:
    if ctx.dry_run:
        return Skip("dry run"), {}
    if not ctx.config.router_refit:
        return Skip("router refit is off (cycle.router_refit)"), {}
    return (lambda: s.router(ctx)), {"mine": ctx.outputs.get("mine")}


def _bind_snapshot(s: CycleSteps, ctx: StepContext, stage: str) -> Binding:
    return (lambda: s.snapshot(ctx, stage)), {"mine": ctx.outputs.get("mine"), "stage": stage}


def _bind_train(s: CycleSteps, ctx: StepContext, stage: str) -> Binding:
    snap = ctx.outputs.get(f"snapshot:{stage}") or {}
    parent = _parent(ctx, stage)
    inputs = {"snapshot": snap, "parent": parent, "stage": ctx.config.stage(stage).model_dump()}  # type: ignore[arg-type]
    if ctx.dry_run:
        return Skip("dry run"), inputs
    if "skipped" in snap:
        return Skip(f"no {stage} data: {snap['skipped']}"), inputs
    return (lambda: s.train(ctx, stage, snap, parent)), inputs


def _with_candidate(bind: Callable[[CycleSteps, StepContext, dict], Binding]):
    """Steps after training: skipped in a dry run, and when no stage trained a candidate."""

    def bound(s: CycleSteps, ctx: StepContext, _: str) -> Binding:
        if ctx.dry_run:
            return Skip("dry run"), {}
        candidate = _candidate(ctx)
        if candidate is None:
            return Skip("no stage trained a candidate"), {}
        return bind(s, ctx, candidate)

    return bound


def _bind_evaluate(s: CycleSteps, ctx: StepContext, candidate: dict) -> Binding:
    baseline = ctx.cycle.serving
    return (lambda: s.evaluate(ctx, candidate, baseline)), {"candidate": candidate, "baseline": baseline}


def _bind_gate(s: CycleSteps, ctx: StepContext, candidate: dict) -> Binding:
    evaluation = ctx.outputs.get("evaluate") or {}
    return (lambda: s.gate(ctx, candidate, evaluation)), {"candidate": candidate, "eval": evaluation}


def _bind_canary(s: CycleSteps, ctx: StepContext, candidate: dict) -> Binding:
    gate = ctx.outputs.get("gate") or {}
    if not gate.get("passed"):
        return Skip("the gate did not pass"), {}
    if not ctx.config.promote:
        return Skip("promotion is off (cycle.promote)"), {}
    if not ctx.config.canary.enabled:
        return Skip("the canary is off (cycle.canary.enabled)"), {}
    return (lambda: s.canary(ctx, candidate, gate)), {"candidate": candidate, "gate": gate}


CANARY_REFUSED = ("rejected", "inconclusive", "stopped", "failed", "interrupted")


def _bind_promote(s: CycleSteps, ctx: StepContext, candidate: dict) -> Binding:
    gate = ctx.outputs.get("gate") or {}
    canary = ctx.outputs.get("canary") or {}
    inputs = {"candidate": candidate, "gate": gate, "canary": canary}
    if canary.get("decision") in CANARY_REFUSED:  # live traffic said no: the gate's pass does not promote
        refused = {
            **gate,
            "passed": False,
            "reasons": [f"canary {canary['decision']}: {canary.get('reason')}"],
        }
        return (lambda: s.reject(ctx, candidate, refused)), inputs
    if gate.get("passed") and ctx.config.promote:
        return (lambda: s.promote(ctx, candidate, gate)), inputs
    return (lambda: s.reject(ctx, candidate, gate)), inputs


STEPS: tuple[StepKind, ...] = (
    StepKind("mine", "new requests + feedback → pairs, SFT and KTO examples", MineOutput, _bind_mine),
    StepKind("router", "refit the intent router from route flags, gated", RouterOutput, _bind_router),
    StepKind("snapshot", "the data a stage trains on", SnapshotOutput, _bind_snapshot, per_stage=True),
    StepKind("train", "a stage's training child → a checkpoint", TrainOutput, _bind_train, per_stage=True),
    StepKind(
        "evaluate", "candidate and serving on the same items", EvaluateOutput, _with_candidate(_bind_evaluate)
    ),
    StepKind("gate", "the policy's decision", GateOutput, _with_candidate(_bind_gate)),
    StepKind(
        "canary",
        "a sticky share of live traffic, decided by a sequential test",
        CanaryOutput,
        _with_candidate(_bind_canary),
    ),
    StepKind(
        "promote", "on pass the swap, on fail the rejection", PromoteOutput, _with_candidate(_bind_promote)
    ),
)
STEP_KINDS: dict[str, StepKind] = {k.kind: k for k in STEPS}


def step_kind(name: str) -> StepKind:
    """The table entry of a step name (``train:dpo`` → train)."""
    kind = name.partition(":")[0]
    if kind not in STEP_KINDS:
        raise CycleError(f"unknown step {name!r} (kinds: {', '.join(STEP_KINDS)})")
    return STEP_KINDS[kind]


def read_output(name: str, output: dict[str, Any] | None) -> StepOutput:
    """A stored step output as its typed model (unknown keys kept)."""
    return step_kind(name).output.model_validate(output or {})


def plan(stages: list[str]) -> list[str]:
    """Step names in the order they run."""
    ordered = [s for s in STAGE_ORDER if s in stages]
    return [name for k in STEPS for name in ([f"{k.kind}:{s}" for s in ordered] if k.per_stage else [k.kind])]


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _now() -> datetime:
    return datetime.now(UTC)


def new_cycle_id() -> str:
    return "cycle-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


# ---------------------------------------------------------------------------------------------- runner


class CycleRunner:
    """Starts, runs, cancels and resumes cycles; at most one runs at a time (per store)."""

    def __init__(
        self,
        store: CycleStore,
        steps: CycleSteps,
        clock: Callable[[], datetime] = _now,
        new_id: Callable[[], str] = new_cycle_id,
    ):
        self.store = store
        self.steps = steps
        self.clock = clock
        self.new_id = new_id
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self._interrupting: set[str] = set()

    # ---- lifecycle ------------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """At process start: cycles left `running` by a dead process become `interrupted` (and their
        running step too), so `resume` or the next run continues them."""
        ids = []
        while (c := self.store.running()) is not None and c.cycle_id not in self._events:
            for s in self.store.steps(c.cycle_id):
                if s.status == "running":
                    s.status, s.error = "interrupted", "the platform stopped while this step ran"
                    self.store.save_step(s)
            c.status, c.error = "interrupted", "the platform stopped during the cycle"
            self.store.update(c)
            ids.append(c.cycle_id)
        return ids

    def begin(
        self,
        config: CycleConfig,
        trigger: str,
        stages: list[str] | None = None,
        dry_run: bool = False,
        resume: bool = True,
    ) -> CycleRecord:
        """Create the cycle row (or pick up an interrupted one when ``resume``) without running it.

        Raises CycleBusy when a cycle is running."""
        with self._lock:
            self._refuse_if_busy()
            if resume and not dry_run and (old := self.store.latest("interrupted")) is not None:
                return self._reopen(old)
            chosen = check_known(
                stages if stages is not None else config.stages, STAGE_ORDER, "stage", CycleError
            )
            cfg = config.model_copy(update={"stages": [s for s in STAGE_ORDER if s in chosen]})
            cycle = CycleRecord(
                cycle_id=self.new_id(),
                status="running",
                trigger=trigger,
                stages=cfg.stages,
                dry_run=dry_run,
                config=cfg.model_dump(mode="json"),
                serving=self.steps.serving(),
                started_at=self.clock(),
            )
            self.store.create(cycle)
            self._events[cycle.cycle_id] = threading.Event()
            return cycle

    def reopen(self, cycle_id: str) -> CycleRecord:
        """`keel cycle resume ID`: an interrupted, failed or cancelled cycle runs again from where it stopped."""
        with self._lock:
            self._refuse_if_busy()
            c = self.store.get(cycle_id)
            if c is None:
                raise UnknownCycle(f"unknown cycle {cycle_id!r} (see `keel cycle list`)")
            if c.status not in RESUMABLE:
                raise CycleError(f"cycle {cycle_id} is {c.status}: only {', '.join(RESUMABLE)} cycles resume")
            return self._reopen(c)

    def _reopen(self, c: CycleRecord) -> CycleRecord:
        c.status, c.error, c.finished_at, c.outcome = "running", None, None, None
        self.store.update(c)
        self._events[c.cycle_id] = threading.Event()
        return c

    def _refuse_if_busy(self) -> None:
        running = self.store.running()
        if running is not None:
            raise CycleBusy(running.cycle_id)

    def cancel(self, cycle_id: str) -> CycleRecord:
        c = self.store.get(cycle_id)
        if c is None:
            raise UnknownCycle(f"unknown cycle {cycle_id!r}")
        ev = self._events.get(cycle_id)
        if c.status != "running":
            raise CycleError(f"cycle {cycle_id} is not running (it is {c.status})")
        if ev is None:  # running in a process that died: nothing to stop, just record it
            c.status, c.error, c.finished_at = "cancelled", "cancelled", self.clock()
            self.store.update(c)
            return c
        ev.set()
        return c

    def interrupt(self, cycle_id: str) -> None:
        """The process is stopping: stop the cycle like cancel, but record it ``interrupted`` so that
        `resume` (or the next run) continues it."""
        ev = self._events.get(cycle_id)
        if ev is not None:
            self._interrupting.add(cycle_id)
            ev.set()

    def active(self) -> str | None:
        return next(iter(self._events), None)

    # ---- run ------------------------------------------------------------------------------------------
    def run(self, config: CycleConfig, trigger: str, **kw: Any) -> CycleRecord:
        """begin + execute (blocking)."""
        return self.execute(self.begin(config, trigger, **kw).cycle_id)

    def execute(self, cycle_id: str) -> CycleRecord:
        cycle = self.store.get(cycle_id)
        if cycle is None:
            raise UnknownCycle(f"unknown cycle {cycle_id!r}")
        event = self._events.setdefault(cycle_id, threading.Event())
        cfg = CycleConfig.model_validate(cycle.config)
        rows = {s.name: s for s in self.store.steps(cycle_id)}
        ctx = StepContext(cycle, cfg, event)
        try:
            for seq, name in enumerate(plan(cycle.stages)):
                prev = rows.get(name)
                if prev is not None and prev.status in FINISHED_STEP:
                    ctx.outputs[name] = prev.output  # done before: never run again
                    continue
                if event.is_set():
                    raise Cancelled("cancelled")
                self._run_step(ctx, seq, name, prev)
            cycle.status = "succeeded"
            cycle.outcome = self._outcome(ctx)
        except Cancelled:
            if cycle_id in self._interrupting:
                cycle.status, cycle.error = "interrupted", "the platform stopped during the cycle"
            else:
                cycle.status, cycle.error = "cancelled", "cancelled"
        except Exception as e:  # the step's error stops the cycle
            cycle.status = "failed"
            cycle.error = cycle.error or f"{type(e).__name__}: {e}"
        finally:
            cycle.finished_at = self.clock()
            try:
                cycle.report = self.steps.finish(ctx, cycle, self.store.steps(cycle_id))
            except Exception as e:  # a report problem never hides the cycle's own result
                cycle.error = cycle.error or f"report: {e}"
            self.store.update(cycle)
            with self._lock:
                self._events.pop(cycle_id, None)
                self._interrupting.discard(cycle_id)
        return cycle

    def _run_step(self, ctx: StepContext, seq: int, name: str, prev: StepRecord | None) -> None:
        call, inputs = self._bind(ctx, name)
        row = StepRecord(
            ctx.cycle_id,
            name,
            seq,
            "running",
            started_at=self.clock(),
            input_hash=digest(inputs),
            attempts=(prev.attempts if prev else 0) + 1,
        )
        self.store.save_step(row)
        ctx.resumed = prev is not None
        try:
            if isinstance(call, Skip):
                result: Outcome = call
            else:
                result = call()
        except Cancelled:
            self._stopped(row)
            raise
        except Exception as e:
            row.status, row.error, row.finished_at = "failed", f"{type(e).__name__}: {e}", self.clock()
            self.store.save_step(row)
            ctx.cycle.error = f"{name}: {row.error}"
            raise
        if ctx.cancelled:  # the step returned because its child was killed
            self._stopped(row)
            raise Cancelled("cancelled")
        row.finished_at = self.clock()
        row.output = dict(result.output)
        if isinstance(result, Skip):
            row.status, row.reason = "skipped", result.reason
            row.output.setdefault("skipped", result.reason)
        else:
            row.status = "done"
            row.output_hash = result.hash or digest(row.output)
        self.store.save_step(row)
        ctx.outputs[name] = row.output

    def _stopped(self, row: StepRecord) -> None:
        if row.cycle_id in self._interrupting:
            row.status, row.error = "interrupted", "the platform stopped while this step ran"
        else:
            row.status, row.error = "cancelled", "cancelled"
        row.finished_at = self.clock()
        self.store.save_step(row)

    def _bind(self, ctx: StepContext, name: str) -> Binding:
        """The call for step ``name`` with its inputs (earlier outputs), or a Skip when it cannot run."""
        return step_kind(name).bind(self.steps, ctx, name.partition(":")[2])

    @staticmethod
    def _outcome(ctx: StepContext) -> str:
        if ctx.dry_run:
            return "dry_run"
        final = ctx.outputs.get("promote") or {}
        if "skipped" in final:
            return "nothing_to_train"
        return str(final.get("decision") or "done")
