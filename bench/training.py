"""Training benchmark: tokens/s per stage (Keel runner vs a plain TRL script, same settings), data
preparation throughput (MB/s with dedup + PII) and peak memory per stage.

    OMP_NUM_THREADS=1 python bench/training.py --datasets ~/.keel/datasets --reps 3 --steps 5 --max-length 64

The machine is shared, so one run interleaves the two sides (Keel, TRL, TRL, Keel, Keel, TRL, ...; the
order flips every repetition so a load trend favours neither) and reports the median of the per-pair
ratios. Two speeds are measured over the same steady-state window (from the end of step 1 to the end of
the last step, so model load, tokenisation and the first step's warm-up are outside it):

- tokens/s (wall clock): what a user sees, but it moves with whatever else runs on the machine;
- CPU-seconds per token (``time.process_time`` of the training process): the work this process did,
  far less sensitive to other jobs taking the cores. Ratios are written so > 1 means Keel is faster.

Both sides run the same trainer class on the same rows with the same resolved settings (the plain side
takes learning rate, schedule, seed, lengths from Keel's own stage config), the same reference model
handling for DPO (an explicitly loaded copy of the parent, no precomputed log-probs), no evaluation or
saving inside the window. The timing hook wraps ``transformers.Trainer.train`` identically in both.
Each measurement runs in its own process, so peak RSS (ru_maxrss) is per stage and side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# This file is named like the `training` package; drop bench/ from the path so imports find the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
RECIPES = REPO / "training" / "recipes"
TRAIN_ROWS = 64


def install_clock() -> dict:
    """Wrap Trainer.train (both sides alike) with a callback that clocks the steady-state window."""
    import transformers

    clock: dict = {"end": {}, "tokens": {}}

    class StepClock(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            clock["end"][state.global_step] = (time.perf_counter(), time.process_time())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "num_tokens" in logs:
                clock["tokens"][state.global_step] = logs["num_tokens"]

        def on_train_end(self, args, state, control, **kw):
            clock["log_history"] = state.log_history

    original = transformers.Trainer.train

    def train(self, *a, **kw):
        self.add_callback(StepClock())
        return original(self, *a, **kw)

    transformers.Trainer.train = train
    return clock


def summarise(clock: dict) -> dict:
    steps = sorted(clock["end"])
    first, last = steps[0], steps[-1]
    if last == first or last not in clock["tokens"] or first not in clock["tokens"]:
        raise SystemExit("need at least 2 steps with num_tokens logged every step (logging_steps=1)")
    tokens = clock["tokens"][last] - clock["tokens"][first]
    wall = clock["end"][last][0] - clock["end"][first][0]
    cpu = clock["end"][last][1] - clock["end"][first][1]
    runtime = next((h["train_runtime"] for h in reversed(clock["log_history"]) if "train_runtime" in h), 0)
    return {
        "steps": last,
        "window_tokens": tokens,
        "tokens_per_s": tokens / wall,
        "cpu_s_per_ktok": 1000 * cpu / tokens,
        "cpu_busy": cpu / wall,  # cores this process kept busy in the window (≤ its threads)
        "train_runtime_s": runtime,
    }


def stage_config(stage: str, model: str, dataset: str, out: str, steps: int, max_length: int):
    from training.config import make_config

    return make_config(
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
            "max_train_samples": TRAIN_ROWS,
            "eval_steps": 0,
            **({"max_eval_samples": 8} if stage == "cpt" else {}),
        },
    )


def child_keel(cfg) -> None:
    """The Keel stage runner (what `keel train` runs), end to end including the checkpoint write."""
    module = __import__(f"training.stages.{cfg.stage}", fromlist=["main"])
    module.main(cfg)


def child_plain(cfg) -> None:
    """A plain TRL script with the same settings (the baseline)."""
    import torch
    import trl
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.chat_template import with_generation_markers

    train = load_dataset("json", data_files=str(Path(cfg.dataset) / "train.jsonl"), split="train")
    train = train.select(range(min(TRAIN_ROWS, len(train))))
    tok = AutoTokenizer.from_pretrained(cfg.model)
    common = dict(
        output_dir=cfg.output_dir,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        max_length=cfg.max_length,
    )
    m = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    if cfg.stage == "dpo":
        args = trl.DPOConfig(**common, beta=cfg.beta, loss_type=list(cfg.loss_type))
        ref = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
        trainer = trl.DPOTrainer(model=m, ref_model=ref, args=args, train_dataset=train, processing_class=tok)
    else:
        if cfg.stage == "sft":
            tok.chat_template = with_generation_markers(tok.chat_template)
            args = trl.SFTConfig(**common, assistant_only_loss=True)
        else:
            args = trl.SFTConfig(**common, packing=True, dataset_text_field="text")
        trainer = trl.SFTTrainer(model=m, args=args, train_dataset=train, processing_class=tok)
    trainer.train()
    trainer.save_model(cfg.output_dir)


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
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
        )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {stage} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = round(time.perf_counter() - t0, 1)
    res["loadavg_1m"] = os.getloadavg()[0]
    return res


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
            "loadavg_1m": os.getloadavg()[0],
        }
    return out


def compare(pairs: list[dict]) -> dict:
    """Median per-pair ratios (> 1: Keel faster) and medians of each side."""

    def med(side: str, key: str) -> float:
        return round(statistics.median(p[side][key] for p in pairs), 3)

    return {
        "reps": len(pairs),
        "ratio_tokens_per_s": round(
            statistics.median(p["keel"]["tokens_per_s"] / p["plain"]["tokens_per_s"] for p in pairs), 3
        ),
        "ratio_cpu_per_token": round(
            statistics.median(p["plain"]["cpu_s_per_ktok"] / p["keel"]["cpu_s_per_ktok"] for p in pairs), 3
        ),
        **{
            f"{side}_{key}": med(side, key)
            for side in ("keel", "plain")
            for key in ("tokens_per_s", "cpu_s_per_ktok", "cpu_busy", "peak_rss_mb")
        },
        "loadavg_1m": [p[s]["loadavg_1m"] for p in pairs for s in ("keel", "plain")],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, stage, model, dataset, out, steps, max_length = sys.argv[2:9]
        cfg = stage_config(stage, model, dataset, out, int(steps), int(max_length))
        clock = install_clock()
        (child_keel if kind == "keel" else child_plain)(cfg)
        res = summarise(clock)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(Path.home() / ".cache/keel-test/checkpoints/base"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5, help="Keel/TRL pairs per stage, interleaved.")
    ap.add_argument("--stages", default="cpt,sft,dpo")
    ap.add_argument("--out", default="bench/results/training.json")
    ap.add_argument(
        "--datasets", default="", help="Reuse snapshots <dir>/tidb-<stage> (skips the data-prep figure)."
    )
    a = ap.parse_args()
    stages = a.stages.split(",")
    results: dict = {
        "steps": a.steps,
        "max_length": a.max_length,
        "batch": 2,
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "command": " ".join(sys.argv),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not a.datasets:
            results["data_prep"] = bench_data(Path(tmp))
            print(json.dumps(results["data_prep"], indent=1), flush=True)
        pairs: dict[str, list[dict]] = {s: [] for s in stages}
        for rep in range(a.reps):
            for stage in stages:
                ds = (
                    str(Path(a.datasets).expanduser() / f"tidb-{stage}")
                    if a.datasets
                    else str(Path(tmp) / stage)
                )
                order = ("keel", "plain") if rep % 2 == 0 else ("plain", "keel")
                pair = {kind: run_child(kind, stage, a.model, ds, a.steps, a.max_length) for kind in order}
                pairs[stage].append(pair)
                print(stage, rep, json.dumps(pair), flush=True)
        for stage in stages:
            results[stage] = {"summary": compare(pairs[stage]), "runs": pairs[stage]}
            print(stage, json.dumps(results[stage]["summary"]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
