"""Training tokens/s per core against what this CPU could do at most (issue 14's benchmark).

    python bench/train_peak.py --threads 2 --run ~/.keel/checkpoints/<cpt version>

The ceiling: the model's training FLOPs per token (forward 2 FLOPs per matmul weight, the tied output
projection included, plus causal attention's 2·seq·d per layer; backward twice the forward) divided into
the measured peak of a matmul on this CPU, at the training's thread count and dtype, both on a large
square GEMM and on the model's own MLP shape (tokens per step × hidden × intermediate). The measured side
is what a training run recorded: tokens seen over its training seconds (`budget` in the run's
training report, or `--tokens/--seconds` by hand). Their quotient is the model-FLOPs utilisation.
JSON saved to bench/results/train_peak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def gemm_peak(m: int, k: int, n: int, dtype, seconds: float = 5.0) -> float:
    """Best FLOP/s of ``(m×k) @ (k×n)`` over repeated timed batches (after a warm-up)."""
    import torch

    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best, t_end = 0.0, time.perf_counter() + seconds
    reps = max(1, int(2e9 / (2 * m * k * n)))
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, reps * 2 * m * k * n / (time.perf_counter() - t0))
    return best


def flops_per_token(cfg: dict, seq: int) -> dict:
    d, L, ff, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", heads)
    hd = cfg.get("head_dim") or d // heads
    per_layer = d * heads * hd + 2 * d * kv * hd + heads * hd * d + 3 * d * ff  # q, k+v, o, gate+up+down
    matmul_params = L * per_layer + d * V  # the (tied) output projection is a matmul on every position
    attention = L * 2 * seq * heads * hd  # QK^T + AV, causal: half of 2·2·seq·d
    forward = 2 * matmul_params + attention
    return {"matmul_params": matmul_params, "forward": forward, "train": 3 * forward}


def run_figures(run: Path) -> tuple[int, float, dict]:
    """Tokens and training seconds a run recorded (its manifest's budget), and the model config it trained."""
    for name in ("manifest.json", "training_report.json", "report.json", "train_report.json"):
        for p in (run / name, run / "report" / name):
            if p.exists():
                rep = json.loads(p.read_text())
                b = rep.get("budget") or rep.get("result", {}).get("budget") or {}
                if b.get("tokens") and b.get("train_s"):
                    return (
                        int(b["tokens"]),
                        float(b["train_s"]),
                        json.loads((run / "config.json").read_text()),
                    )
    raise SystemExit(f"error: no training report with budget figures under {run} (pass --tokens/--seconds)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--run", type=Path, help="A trained checkpoint folder (its training report gives tokens/s)."
    )
    ap.add_argument("--model", type=Path, default=Path("~/.keel/checkpoints/base").expanduser())
    ap.add_argument("--tokens", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--seq", type=int, default=256, help="Training sequence length (attention FLOPs).")
    ap.add_argument("--batch", type=int, default=2, help="Sequences per step (the MLP GEMM shape).")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train_peak.json")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import torch

    torch.set_num_threads(a.threads)
    if a.tokens and a.seconds:
        tokens, seconds = a.tokens, a.seconds
        cfg = json.loads((a.model / "config.json").read_text())
    elif a.run:
        tokens, seconds, cfg = run_figures(a.run.expanduser())
    else:
        print("error: pass --run or --tokens and --seconds", file=sys.stderr)
        return 2
    f = flops_per_token(cfg, a.seq)
    rows = a.batch * a.seq
    peaks = {
        "fp32 2048x2048x2048": gemm_peak(2048, 2048, 2048, torch.float32),
        f"fp32 MLP {rows}x{cfg['hidden_size']}x{cfg['intermediate_size']}": gemm_peak(
            rows, cfg["hidden_size"], cfg["intermediate_size"], torch.float32
        ),
        f"fp32 head {rows}x{cfg['hidden_size']}x{cfg['vocab_size']}": gemm_peak(
            rows, cfg["hidden_size"], cfg["vocab_size"], torch.float32, seconds=3.0
        ),
    }
    if torch.backends.mkldnn.is_available():
        peaks["bf16 2048x2048x2048"] = gemm_peak(2048, 2048, 2048, torch.bfloat16)
    peak = peaks["fp32 2048x2048x2048"]
    tps = tokens / seconds
    res = {
        "threads": a.threads,
        "tokens": tokens,
        "train_s": seconds,
        "tokens_per_s": tps,
        "tokens_per_s_per_core": tps / a.threads,
        "flops_per_token": f,
        "gemm_peak_flops": peaks,
        "ceiling_tokens_per_s": peak / f["train"],
        "mfu": tps * f["train"] / peak,
        "load_after": os.getloadavg(),
        "cpu": Path("/proc/cpuinfo").read_text().split("model name")[1].split("\n")[0].strip(": "),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(
        f"model: {f['matmul_params'] / 1e6:.1f}M matmul weights, {f['train'] / 1e9:.3f} GFLOP per trained token"
    )
    for k, v in peaks.items():
        print(f"peak {k}: {v / 1e9:.1f} GFLOP/s on {a.threads} threads")
    print(
        f"measured: {tps:.1f} tokens/s ({tps / a.threads:.1f} per core); ceiling at the fp32 peak: "
        f"{res['ceiling_tokens_per_s']:.1f} tokens/s; utilisation {res['mfu'] * 100:.1f}%"
    )
    print(f"saved {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
