"""The vLLM scorer's engine settings reach the engine's start only, and never override the caller's."""

from __future__ import annotations

import os

from training.eval.vllm_backend import _environment


def test_defaults_apply_inside_the_block_only(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_NUM_OF_RESERVED_CPU", raising=False)
    with _environment({"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}):
        assert os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    # a platform started later by the same process (tests, the CLI) must not inherit the eval's binding
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in os.environ


def test_the_callers_environment_wins(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")
    with _environment({"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}):
        assert os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1"
    assert os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1"
