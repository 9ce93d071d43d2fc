"""`python -m training.eval run CHECKPOINT --config eval.json [--rerun]`: one eval, in a child process.

The flywheel cycle runs evaluation this way (own process group, lower priority), as `python -m training`
runs training. ``eval.json`` holds the fields of :class:`training.eval.runner.EvalConfig` (paths resolved by
the platform). Prints one JSON line: the eval file, whether it is complete and its summaries.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from training.eval.data import EvalDataError
from training.eval.runner import EvalConfig, ensure_eval

_PATHS = ("mmlu", "cmmlu", "general", "domain", "answers", "prefs")


def load_config(path: Path) -> EvalConfig:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise EvalDataError(f"cannot read eval config {path}: {e}") from None
    known = {f.name for f in fields(EvalConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise EvalDataError(f"eval config {path}: unknown key {unknown[0]!r}")
    for k in _PATHS:
        if data.get(k):
            data[k] = Path(data[k])
    return EvalConfig(**data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.eval")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="Evaluate one checkpoint (reuses a matching eval JSON).")
    run.add_argument("checkpoint", type=Path)
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--rerun", action="store_true")
    a = ap.parse_args(argv)
    try:
        cfg = load_config(a.config)
        out = ensure_eval(a.checkpoint, cfg, rerun=a.rerun)
    except (EvalDataError, FileNotFoundError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    r = out.result
    summary = {
        k: r[k]["summary"].get("overall", r[k]["summary"])
        for k in ("mmlu", "cmmlu", "domain", "general", "answers", "prefs")
        if k in r
    }
    print(json.dumps({"path": str(out.path), "complete": r.get("complete"), "summary": summary}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
