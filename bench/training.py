"""Training benchmark: tokens/s per stage (Keel runner vs a plain TRL script, same settings), data
preparation throughput (MB/s with dedup + PII) and peak memory per stage.

    OMP_NUM_THREADS=2 python bench/training.py --steps 8 --max-length 256 --out bench-training.json

Each measurement runs in its own process, so peak RSS (ru_maxrss) is per stage. Results go into
docs/BENCHMARKS.md (Training section) by hand, with the command line and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# This file is named like the `training` package; drop bench/ from the path so imports find the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
RECIPES = REPO / "training" / "recipes"


def _tokens_per_s(history: list[dict]) -> tuple[float, float]:
    tokens = max((h.get("num_tokens", 0) for h in history), default=0)
    runtime = next((h["train_runtime"] for h in reversed(history) if "train_runtime" in h), float("nan"))
    return tokens, tokens / runtime


def child_keel(stage: str, model: str, dataset: str, out: str, steps: int, max_length: int) -> dict:
    """The Keel stage runner (what `keel train` runs), end to end including the checkpoint write."""
    from training.__main__ import run_stage

    t0 = time.perf_counter()
    result = run_stage(
        stage,
        {
            "model": model,
            "dataset": dataset,
            "output_dir": out,
            "max_steps": steps,
            "max_length": max_length,
            "per_device_train_batch_size": 2,
            "save_steps": 10_000,
            "logging_steps": 1,
            "max_train_samples": 64,
            **({"max_eval_samples": 8} if stage == "cpt" else {}),
        },
    )
    records = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    tokens, tps = _tokens_per_s(records)
    return {"tokens": tokens, "tokens_per_s": tps, "wall_s": time.perf_counter() - t0, "steps": result.steps}


def child_plain(stage: str, model: str, dataset: str, out: str, steps: int, max_length: int) -> dict:
    """A plain TRL script with the same settings (the baseline)."""
    import torch
    import trl
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.chat_template import with_generation_markers

    t0 = time.perf_counter()
    train = load_dataset("json", data_files=str(Path(dataset) / "train.jsonl"), split="train").select(
        range(64)
    )
    tok = AutoTokenizer.from_pretrained(model)
    common = dict(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=2,
        learning_rate=2e-5,
        warmup_steps=0.1,
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        max_length=max_length,
    )
    m = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    if stage == "dpo":
        args = trl.DPOConfig(**common)
        ref = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        trainer = trl.DPOTrainer(model=m, ref_model=ref, args=args, train_dataset=train, processing_class=tok)
    else:
        if stage == "sft":
            tok.chat_template = with_generation_markers(tok.chat_template)
            args = trl.SFTConfig(**common, assistant_only_loss=True)
        else:
            args = trl.SFTConfig(**common, packing=True, dataset_text_field="text")
        trainer = trl.SFTTrainer(model=m, args=args, train_dataset=train, processing_class=tok)
    trainer.train()
    trainer.save_model(out)
    tokens, tps = _tokens_per_s(trainer.state.log_history)
    return {
        "tokens": tokens,
        "tokens_per_s": tps,
        "wall_s": time.perf_counter() - t0,
        "steps": trainer.state.global_step,
    }


def run_child(kind: str, stage: str, model: str, dataset: str, steps: int, max_length: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out")
        cmd = [
            sys.executable,
            __file__,
            "--child",
            kind,
            stage,
            model,
            dataset,
            out,
            str(steps),
            str(max_length),
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
        )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_data(root: Path) -> dict[str, dict]:
    """Prepare the shipped data recipes into ``root``; MB/s as reported in stats.json."""
    import yaml

    from training.data.prepare import make_prepare_config, prepare

    out = {}
    for kind in ("cpt", "sft", "dpo"):
        data = yaml.safe_load((RECIPES / f"data-{kind}.yaml").read_text())
        data["output"] = str(root / kind)
        for k in ("sources", "general", "general_eval", "eval_sets", "doc_summaries"):
            data[k] = [str((REPO / p).resolve()) for p in data.get(k, [])]
        t0 = time.perf_counter()
        snap = prepare(make_prepare_config(data))
        stats = json.loads((snap.path / "stats.json").read_text())
        out[kind] = {
            "mb_in": round(stats["bytes_in"] / 1e6, 2),
            "seconds": round(time.perf_counter() - t0, 1),
            "mb_per_s": stats["mb_per_s"],
            "kept": stats["kept"],
            "pii": stats["pii"],
            "dropped": stats["dropped"],
        }
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, stage, model, dataset, out, steps, max_length = sys.argv[2:9]
        fn = child_keel if kind == "keel" else child_plain
        res = fn(stage, model, dataset, out, int(steps), int(max_length))
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(Path.home() / ".cache/keel-test/checkpoints/base"))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--stages", default="cpt,sft,dpo")
    ap.add_argument("--out", default="bench-training.json")
    ap.add_argument(
        "--datasets", default="", help="Reuse snapshots <dir>/tidb-<stage> (skips the data-prep figure)."
    )
    a = ap.parse_args()
    results: dict = {
        "steps": a.steps,
        "max_length": a.max_length,
        "batch": 2,
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not a.datasets:
            results["data_prep"] = bench_data(Path(tmp))
            print(json.dumps(results["data_prep"], indent=1), flush=True)
        for stage in a.stages.split(","):
            ds = (
                str(Path(a.datasets).expanduser() / f"tidb-{stage}") if a.datasets else str(Path(tmp) / stage)
            )
            keel = run_child("keel", stage, a.model, ds, a.steps, a.max_length)
            plain = run_child("plain", stage, a.model, ds, a.steps, a.max_length)
            results[stage] = {
                "keel": keel,
                "plain_trl": plain,
                "ratio": keel["tokens_per_s"] / plain["tokens_per_s"],
            }
            print(stage, json.dumps(results[stage]), flush=True)
    Path(a.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
