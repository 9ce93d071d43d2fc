"""The cycle's step table (issue 25): plan, binding, CLI and report read one table; outputs are typed."""

from __future__ import annotations

import dataclasses

import pytest

from flywheel import cycle
from flywheel.cycle import STEPS, CycleError, Done, StepKind, plan, read_output, step_kind
from flywheel.step_outputs import StepOutput, fmt


def test_plan_is_the_table_expanded_over_the_chosen_stages():
    assert plan(["dpo", "cpt"]) == [
        "mine",
        "router",
        "snapshot:cpt",
        "snapshot:dpo",
        "train:cpt",
        "train:dpo",
        "evaluate",
        "gate",
        "canary",
        "promote",
    ]
    assert [step_kind(n).kind for n in plan(["sft"])] == [k.kind for k in STEPS]
    with pytest.raises(CycleError, match="unknown step 'shadow'"):
        step_kind("shadow")


def test_a_new_step_is_one_table_entry(monkeypatch):
    """A step added to the table runs in its place with its own binding, no other edit."""

    class CanaryOutput(StepOutput):
        decision: str = ""

        def summary(self) -> str:
            return f"canary {self.decision}"

    def bind(steps, ctx, _stage):
        return (lambda: Done({"decision": "promote"})), {"gate": ctx.outputs.get("gate")}

    table = list(STEPS)
    table.insert(len(table) - 1, StepKind("shadow", "a copy of live traffic", CanaryOutput, bind))
    monkeypatch.setattr(cycle, "STEPS", tuple(table))
    monkeypatch.setattr(cycle, "STEP_KINDS", {k.kind: k for k in table})
    assert plan(["sft"])[-3:] == ["canary", "shadow", "promote"]
    assert read_output("shadow", {"decision": "promote"}).summary() == "canary promote"


def test_outputs_are_typed_keep_unknown_keys_and_read_rounded():
    out = read_output("train:cpt", {"version": "v1", "steps": 700, "first_loss": 2.6798269748687744,
                                    "loss": 1.7494240999221802, "extra": 1})  # fmt: skip
    assert out.model_extra == {"extra": 1}
    assert out.summary() == "v1 · 700 steps · loss 2.68 → 1.75"
    ev = read_output(
        "evaluate",
        {
            "baseline": {
                "version": "base",
                "summary": {"domain_bpb": 1.64271, "mmlu": 0.25},
                "seconds": 300.4,
            },
            "candidate": {
                "version": "c-1",
                "summary": {"domain_bpb": 1.2861, "mmlu": 0.2625},
                "seconds": 280.0,
            },
        },
    )
    assert ev.table() == [
        ("version", "base", "c-1"),
        ("domain_bpb", "1.643", "1.286"),
        ("mmlu", "0.25", "0.2625"),
        ("seconds", "300", "280"),
    ]
    assert read_output("gate", {"passed": False, "reasons": ["a", "b", "c"]}).summary() == "FAIL: a; b"
    assert (fmt(None), fmt(12345), fmt(0.000123456)) == ("-", "12,345", "0.000123")
    assert all(dataclasses.is_dataclass(k) for k in STEPS)
