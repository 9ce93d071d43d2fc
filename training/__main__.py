"""`python -m training <cpt|sft|dpo|kto> --config recipe.yaml [key=value ...] [--resume]`.

The entry point the `deepspeed` launcher (and the kill/resume test) runs: one process per rank. The
recipe must be resolved (a real `model` folder, an `output_dir`); `keel train` resolves `base` and
defaults for you and calls the same stage functions in-process.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.checkpoint import CheckpointError
from training.config import make_config
from training.data.snapshot import SnapshotError
from training.recipe import RecipeError, parse_overrides, read_recipe
from training.stages.common import RunError


def run_stage(stage: str, data: dict, resume: bool = False):
    cfg = make_config(stage, data)
    module = __import__(f"training.stages.{stage}", fromlist=["main"])
    return module.main(cfg, resume=resume)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training")
    ap.add_argument("stage", choices=["cpt", "sft", "dpo", "kto"])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args(argv)
    try:
        data = {**read_recipe(a.config), **parse_overrides(a.overrides)}
        result = run_stage(a.stage, data, a.resume)
    except (RecipeError, RunError, SnapshotError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"output": str(result.output), "steps": result.steps, "metrics": result.metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
