"""The rows reviewed pairs and SFT examples become, in TRL's formats.

    dpo: {"prompt": [messages], "chosen": [assistant], "rejected": [assistant]}
    sft: {"messages": [...]}
    kto: {"prompt": [messages], "completion": [assistant], "label": bool}   (unpaired: thumbs up / down)

The snapshot that holds them (``<out>/dpo``, ``<out>/sft``, ``<out>/kto``, one hash over all) is the training data
pipeline's format, written by ``training.data.snapshot.write_bundle``; the platform joins the two.
"""

from __future__ import annotations

from typing import Any


def dpo_row(prompt: list[dict[str, Any]], chosen: str, rejected: str) -> dict[str, Any]:
    """TRL's conversational preference format (implicit prompt split: prompt + one assistant turn each)."""
    return {
        "prompt": [{"role": m["role"], "content": m.get("content") or ""} for m in prompt],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def sft_row(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"messages": [{"role": m["role"], "content": m.get("content") or ""} for m in messages]}


def kto_row(prompt: list[dict[str, Any]], completion: str, label: bool) -> dict[str, Any]:
    """TRL's conversational unpaired preference format (KTOTrainer)."""
    return {
        "prompt": [{"role": m["role"], "content": m.get("content") or ""} for m in prompt],
        "completion": [{"role": "assistant", "content": completion}],
        "label": bool(label),
    }
