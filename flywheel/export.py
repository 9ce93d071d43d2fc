"""The rows reviewed pairs and SFT examples become, in TRL's formats.

    dpo: {"prompt": [messages], "chosen": [assistant], "rejected": [assistant]}
    sft: {"messages": [...]}
    kto: {"prompt": [messages], "completion": [assistant], "label": bool}   (unpaired: thumbs up / down)
    prefs: the dpo format, for pairs held out of training (``is_held_out``): the gates' preference margin

The snapshot that holds them (``<out>/dpo``, ``<out>/sft``, ``<out>/kto``, one hash over all) is the training data
pipeline's format, written by ``training.data.snapshot.write_bundle``; the platform joins the two.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flywheel.text import content_text


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


def prompt_key(prompt: list[dict[str, Any]]) -> str:
    """What identifies a prompt across requests: its user turns, whitespace-normalised (not the system
    prompt or retrieved context, which may differ between two askings of the same question)."""
    turns = [" ".join(content_text(m.get("content")).split()) for m in prompt if m.get("role") == "user"]
    return "\x1f".join(turns)


def is_held_out(prompt: list[dict[str, Any]], share: float) -> bool:
    """Whether a prompt's pairs and examples are kept out of training to measure the preference margin:
    a fixed hash of the prompt, so the same question is on the same side in every cycle and in every
    part (a held-out prompt's edit never trains through SFT either)."""
    if share <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(prompt_key(prompt).encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < share
