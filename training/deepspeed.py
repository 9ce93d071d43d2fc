"""DeepSpeed ZeRO configs generated from the recipe (stage 0-3, optional CPU offload).

"auto" values are filled in by the transformers integration from the TrainingArguments, so one
recipe runs unchanged on one CPU process (gloo) or many GPUs. `deploy/deepspeed/` ships the same
JSONs for people who launch by hand.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any


def zero_config(stage: int, offload: str = "none") -> dict[str, Any]:
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"deepspeed_stage must be 0-3, got {stage}")
    zero: dict[str, Any] = {"stage": stage}
    if stage >= 2:
        zero.update(
            overlap_comm=False,  # overlap needs CUDA streams; off is correct everywhere
            contiguous_gradients=True,
            reduce_bucket_size="auto",
        )
    if stage == 3:
        zero.update(
            stage3_prefetch_bucket_size="auto",
            stage3_param_persistence_threshold="auto",
            # gather full weights so save_model writes an ordinary safetensors folder vLLM can load
            stage3_gather_16bit_weights_on_model_save=True,
        )
    if offload == "cpu" and stage >= 1:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "steps_per_print": 10_000,
        "wall_clock_breakdown": False,
    }


def ensure_single_process_env() -> None:
    """Let a plain `python` process (no launcher) initialise a world of one, as DeepSpeed requires."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )


def write_shipped(folder: Path) -> list[Path]:
    """Write zero{0..3}.json and zero{2,3}_offload.json (the files in deploy/deepspeed)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for stage in range(4):
        variants = [("none", "")] + ([("cpu", "_offload")] if stage >= 2 else [])
        for offload, suffix in variants:
            p = folder / f"zero{stage}{suffix}.json"
            p.write_text(json.dumps(zero_config(stage, offload), indent=2) + "\n", encoding="utf-8")
            out.append(p)
    return out
