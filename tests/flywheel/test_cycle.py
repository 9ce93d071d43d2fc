"""The cycle state machine with fake steps: order, skip, fail, cancel, resume, refusal of a second cycle."""

from __future__ import annotations

import threading

import pytest

from flywheel.cycle import (
    CycleBusy,
    CycleError,
    CycleRunner,
    Done,
    Skip,
    plan,
)
from flywheel.cycle_config import CycleConfig
from tests.support.cycle_memory import MemoryCycleStore


class FakeSteps:
    """Records every call; data sizes and failures are set per test."""

    def __init__(self, sft=20, pairs=20, docs=5, gate_passes=True, rated=20):
        self.calls: list[str] = []
        self.sizes = {"cpt": docs, "sft": sft, "dpo": pairs, "kto": rated}
        self.mins = {"cpt": 1, "sft": 8, "dpo": 8, "kto": 8}
        self.gate_passes = gate_passes
        self.fail_at: str | None = None
        self.block_at: str | None = None  # this step waits until the cycle is cancelled
        self.entered = threading.Event()
        self.resumed: dict[str, bool] = {}
        self.promoted: list[str] = []
        self.canary_decision = "promoted"
        self.reports: list[str] = []

    def _enter(self, name, ctx):
        self.calls.append(name)
        self.resumed[name] = ctx.resumed
        if self.fail_at == name:
            raise RuntimeError(f"{name} broke")
        if self.block_at == name:
            self.entered.set()
            assert ctx.cancel_event.wait(10), "never cancelled"
            ctx.check_cancel()

    def serving(self):
        return {"version": "base", "path": "/ckpt/base"}

    def mine(self, ctx):
        self._enter("mine", ctx)
        return Done({"pairs": self.sizes["dpo"], "sft": self.sizes["sft"]})

    def router(self, ctx):
        self._enter("router", ctx)
        return Done({"passed": True, "flags": 2})

    def snapshot(self, ctx, stage):
        self._enter(f"snapshot:{stage}", ctx)
        n = self.sizes[stage]
        if n < self.mins[stage]:
            return Skip(f"{n} rows, fewer than {self.mins[stage]}", {"rows": n})
        return Done({"rows": n, "path": f"/data/{stage}"}, hash=f"h-{stage}")

    def train(self, ctx, stage, snapshot, parent):
        self._enter(f"train:{stage}", ctx)
        return Done({"version": f"{ctx.cycle_id}-{stage}", "parent": parent["version"]})

    def evaluate(self, ctx, candidate, baseline):
        self._enter("evaluate", ctx)
        return Done({"candidate": candidate["version"], "baseline": baseline["version"]})

    def gate(self, ctx, candidate, evaluation):
        self._enter("gate", ctx)
        return Done(
            {"passed": self.gate_passes, "reasons": [] if self.gate_passes else ["domain_bpb: no fall"]}
        )

    def canary(self, ctx, candidate, gate):
        self._enter("canary", ctx)
        return Done({"decision": self.canary_decision, "reason": "error_rate 1 vs 0.02"})

    def promote(self, ctx, candidate, gate):
        self._enter("promote", ctx)
        self.promoted.append(candidate["version"])
        return Done({"decision": "promoted", "version": candidate["version"]})

    def reject(self, ctx, candidate, gate):
        self._enter("reject", ctx)
        return Done({"decision": "rejected", "reasons": gate["reasons"]})

    def finish(self, ctx, cycle, steps):
        self.reports.append(cycle.status)
        return f"/reports/{cycle.cycle_id}.html"


def _runner(steps: FakeSteps, store: MemoryCycleStore | None = None) -> tuple[CycleRunner, MemoryCycleStore]:
    store = store or MemoryCycleStore()
    n = iter(range(1000))
    return CycleRunner(store, steps, new_id=lambda: f"c{next(n)}"), store


def _blocked_at(step: str):
    """A CLI cycle running in a thread, held inside `step` until the test cancels or interrupts it."""
    steps = FakeSteps()
    steps.block_at = step
    runner, store = _runner(steps)
    cycle = runner.begin(CycleConfig(), "cli")
    t = threading.Thread(target=runner.execute, args=(cycle.cycle_id,))
    t.start()
    return steps, runner, store, cycle, t


def test_full_cycle_runs_steps_in_order_and_chains_stages():
    steps = FakeSteps()
    runner, store = _runner(steps)
    c = runner.run(CycleConfig(), "cli")
    assert c.status == "succeeded" and c.outcome == "promoted"
    # the canary is on by default: it runs between gate and promote (on the platform it skips itself
    # when recent traffic could not fill it: tests/flywheel/test_cycle_canary_step.py)
    assert steps.calls == plan(["cpt", "sft", "dpo", "kto"])
    rows = {s.name: s for s in store.steps(c.cycle_id)}
    # SFT starts from the CPT result, DPO from SFT's, KTO from DPO's; the first from serving
    assert rows["train:cpt"].output["parent"] == "base"
    assert rows["train:sft"].output["parent"] == "c0-cpt"
    assert rows["train:dpo"].output["parent"] == "c0-sft"
    assert rows["train:kto"].output["parent"] == "c0-dpo"
    assert steps.promoted == ["c0-kto"]
    assert rows["canary"].output["decision"] == "promoted"
    assert all(s.status == "done" and s.input_hash and s.output_hash for s in rows.values())
    assert rows["snapshot:cpt"].output_hash == "h-cpt"
    assert c.report == "/reports/c0.html"


def test_stage_without_enough_data_is_skipped_with_its_reason():
    steps = FakeSteps(sft=3)
    runner, store = _runner(steps)
    c = runner.run(CycleConfig(), "cli")
    rows = {s.name: s for s in store.steps(c.cycle_id)}
    assert rows["snapshot:sft"].status == "skipped" and "fewer than 8" in rows["snapshot:sft"].reason
    assert rows["train:sft"].status == "skipped" and "no sft data" in rows["train:sft"].reason
    assert "train:sft" not in steps.calls
    assert rows["train:dpo"].output["parent"] == "c0-cpt"  # DPO goes on from CPT
    assert c.status == "succeeded"


def test_nothing_to_train_skips_evaluate_gate_and_promote():
    steps = FakeSteps(sft=0, pairs=0, docs=0, rated=0)
    runner, store = _runner(steps)
    c = runner.run(CycleConfig(), "schedule")
    assert c.status == "succeeded" and c.outcome == "nothing_to_train"
    rows = {s.name: s for s in store.steps(c.cycle_id)}
    for name in ("evaluate", "gate", "promote"):
        assert rows[name].status == "skipped" and rows[name].reason == "no stage trained a candidate"
    assert not any(x.startswith(("train", "evaluate", "gate", "promote")) for x in steps.calls)


def test_gate_failure_rejects_with_reasons_and_does_not_promote():
    steps = FakeSteps(gate_passes=False)
    runner, store = _runner(steps)
    c = runner.run(CycleConfig(stages=["cpt"]), "cli")
    assert c.outcome == "rejected" and steps.promoted == []
    promote = store.steps(c.cycle_id)[-1]
    assert promote.name == "promote" and promote.output["reasons"] == ["domain_bpb: no fall"]


def test_failing_step_stops_the_cycle_with_its_error():
    steps = FakeSteps()
    steps.fail_at = "train:sft"
    runner, store = _runner(steps)
    c = runner.run(CycleConfig(), "cli")
    assert c.status == "failed" and "train:sft" in c.error and "broke" in c.error
    rows = {s.name: s for s in store.steps(c.cycle_id)}
    assert rows["train:sft"].status == "failed" and "broke" in rows["train:sft"].error
    assert "train:dpo" not in rows and "promote" not in steps.calls and steps.promoted == []
    assert steps.reports == ["failed"]  # the report is written for a failed cycle too


def test_resume_continues_from_the_first_incomplete_step_without_rerunning():
    steps = FakeSteps()
    steps.fail_at = "train:sft"
    runner, store = _runner(steps)
    c = runner.run(CycleConfig(), "cli")
    steps.fail_at, steps.calls = None, []
    runner.reopen(c.cycle_id)
    c2 = runner.execute(c.cycle_id)
    assert c2.status == "succeeded" and c2.cycle_id == c.cycle_id
    assert steps.calls[0] == "train:sft"  # mine, snapshots and CPT are not run again
    assert "train:cpt" not in steps.calls
    assert steps.resumed["train:sft"] is True and steps.resumed["train:dpo"] is False
    rows = {s.name: s for s in store.steps(c.cycle_id)}
    assert rows["train:sft"].attempts == 2 and rows["train:cpt"].attempts == 1
    assert rows["train:sft"].output["parent"] == "c0-cpt"  # the earlier output is reused


def test_restart_marks_interrupted_and_the_next_run_continues_it():
    steps = FakeSteps()
    runner, store = _runner(steps)
    cycle = runner.begin(CycleConfig(), "cli")
    # a process that died during train:cpt left these rows behind
    from flywheel.cycle import StepRecord

    store.save_step(StepRecord(cycle.cycle_id, "mine", 0, "done", output={"pairs": 20}, output_hash="x"))
    store.save_step(StepRecord(cycle.cycle_id, "router", 1, "done", output={"passed": True}))
    store.save_step(StepRecord(cycle.cycle_id, "train:cpt", 6, "running", attempts=1))
    for i, st in enumerate(("cpt", "sft", "dpo", "kto")):
        store.save_step(StepRecord(cycle.cycle_id, f"snapshot:{st}", 2 + i, "done", output={"path": st}))

    fresh, _ = _runner(steps, store)  # the restarted process
    assert fresh.recover() == [cycle.cycle_id]
    assert store.get(cycle.cycle_id).status == "interrupted"
    assert {s.name: s.status for s in store.steps(cycle.cycle_id)}["train:cpt"] == "interrupted"
    c = fresh.begin(CycleConfig(), "schedule")  # the next run picks it up instead of a new cycle
    assert c.cycle_id == cycle.cycle_id
    done = fresh.execute(c.cycle_id)
    assert done.status == "succeeded"
    assert steps.calls[0] == "train:cpt" and steps.resumed["train:cpt"] is True
    assert "mine" not in steps.calls and "router" not in steps.calls


def test_second_cycle_is_refused_with_the_running_cycles_id():
    steps, runner, store, cycle, t = _blocked_at("train:cpt")
    try:
        assert steps.entered.wait(10)
        with pytest.raises(CycleBusy) as e:
            runner.begin(CycleConfig(), "api")
        assert e.value.cycle_id == cycle.cycle_id and cycle.cycle_id in str(e.value)
        # a second process sharing the store is refused too
        other, _ = _runner(FakeSteps(), store)
        with pytest.raises(CycleBusy):
            other.begin(CycleConfig(), "schedule")
    finally:
        runner.cancel(cycle.cycle_id)
        t.join(10)


def test_cancel_stops_the_running_step_and_nothing_after_it_runs():
    steps, runner, store, cycle, t = _blocked_at("train:sft")
    assert steps.entered.wait(10)
    runner.cancel(cycle.cycle_id)
    t.join(10)
    assert not t.is_alive()
    c = store.get(cycle.cycle_id)
    assert c.status == "cancelled"
    rows = {s.name: s.status for s in store.steps(cycle.cycle_id)}
    assert rows["train:sft"] == "cancelled" and "train:dpo" not in rows
    assert steps.promoted == []
    # a cancelled cycle can be resumed; the next cycle is free to start
    assert runner.reopen(cycle.cycle_id).status == "running"
    steps.block_at = None
    assert runner.execute(cycle.cycle_id).status == "succeeded"


def test_dry_run_mines_and_snapshots_only():
    steps = FakeSteps()
    runner, store = _runner(steps)
    c = runner.run(CycleConfig(), "cli", dry_run=True, stages=["sft"])
    assert c.outcome == "dry_run" and c.stages == ["sft"]
    assert steps.calls == ["mine", "snapshot:sft"]  # the router refit is skipped in a dry run too
    assert {s.name: s.reason for s in store.steps(c.cycle_id)}["train:sft"] == "dry run"


def test_resume_refuses_finished_and_unknown_cycles():
    steps = FakeSteps()
    runner, _ = _runner(steps)
    c = runner.run(CycleConfig(stages=["cpt"]), "cli")
    with pytest.raises(CycleError, match="succeeded"):
        runner.reopen(c.cycle_id)
    with pytest.raises(CycleError, match="unknown"):
        runner.reopen("nope")
    with pytest.raises(CycleError, match="unknown stage"):
        runner.begin(CycleConfig(), "cli", stages=["rlhf"])


def test_config_validates_schedule_and_stage_order():
    cfg = CycleConfig.model_validate({"stages": ["dpo", "cpt"], "schedule": {"timezone": "Asia/Shanghai"}})
    assert cfg.stages == ["cpt", "dpo"]
    with pytest.raises(ValueError, match="time zone"):
        CycleConfig.model_validate({"schedule": {"timezone": "Mars/Olympus"}})
    with pytest.raises(ValueError, match="5 fields"):
        CycleConfig.model_validate({"schedule": {"cron": "daily"}})
    with pytest.raises(ValueError):
        CycleConfig.model_validate({"min_sft_pairs": 3})  # a typo is an error, not ignored


def test_interrupt_records_interrupted_and_the_next_run_resumes_the_step():
    steps, runner, store, cycle, t = _blocked_at("train:cpt")
    assert steps.entered.wait(10)
    runner.interrupt(cycle.cycle_id)  # the platform is stopping
    t.join(10)
    assert store.get(cycle.cycle_id).status == "interrupted"
    assert {s.name: s.status for s in store.steps(cycle.cycle_id)}["train:cpt"] == "interrupted"
    steps.block_at, steps.calls = None, []
    again = runner.begin(CycleConfig(), "schedule")
    assert again.cycle_id == cycle.cycle_id
    assert runner.execute(again.cycle_id).status == "succeeded"
    assert steps.calls[0] == "train:cpt" and steps.resumed["train:cpt"]


def test_router_refit_runs_after_mining_unless_turned_off():
    steps = FakeSteps()
    runner, store = _runner(steps)
    done = runner.run(CycleConfig(stages=["sft"]), "cli")
    assert steps.calls[:2] == ["mine", "router"]
    assert {s.name: s.output for s in store.steps(done.cycle_id)}["router"] == {"passed": True, "flags": 2}
    steps = FakeSteps()
    runner, store = _runner(steps)
    done = runner.run(CycleConfig(stages=["sft"], router_refit=False), "cli")
    assert "router" not in steps.calls
    row = {s.name: s for s in store.steps(done.cycle_id)}["router"]
    assert row.status == "skipped" and "cycle.router_refit" in (row.reason or "")


@pytest.mark.parametrize("decision", ["promoted", "rejected", "inconclusive"])
def test_with_the_canary_on_live_traffic_decides_what_the_gate_passed(decision):
    """The canary runs between gate and promote; a candidate the canary refused is rejected with the
    canary's reason although its gate passed."""
    steps = FakeSteps()
    steps.canary_decision = decision
    runner, store = _runner(steps)
    cfg = CycleConfig.model_validate({"stages": ["sft"], "canary": {"enabled": True}})
    c = runner.run(cfg, "cli")
    rows = {s.name: s for s in store.steps(c.cycle_id)}
    assert steps.calls[-2:] == ["canary", "promote" if decision == "promoted" else "reject"]
    assert rows["canary"].output["decision"] == decision
    if decision == "promoted":
        assert c.outcome == "promoted" and steps.promoted == ["c0-sft"]
    else:
        assert c.outcome == "rejected" and not steps.promoted
        assert rows["promote"].output["reasons"] == [f"canary {decision}: error_rate 1 vs 0.02"]
