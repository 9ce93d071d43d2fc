"""Serving benchmark: gateway vs direct vLLM, request log on/off/1M rows, vLLM vs transformers generate.

Run (results table printed as Markdown and saved to bench/results/serving.json):
    python bench/serving.py --requests 48 --max-tokens 64

All variants are measured in one run against the same vLLM engine, interleaved round by round, so the
ratios compare like with like on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from keel.store import DB_FILE  # noqa: E402

from bench.support.launcher import PlatformProcess  # noqa: E402

PROMPTS = [
    "Explain what a database index is.",
    "Write a short poem about the sea.",
    "What is the capital of France and why is it famous?",
    "Give three tips for writing clean code.",
    "Describe how a bicycle works.",
    "What is distributed consensus?",
    "Summarize the plot of a detective story.",
    "How do plants make food?",
]


@dataclass
class Run:
    name: str
    concurrency: int
    tokens: int
    seconds: float
    ttft_ms: list[float]
    failed: int

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds

    def p(self, q: float) -> float:
        xs = sorted(self.ttft_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def one(
    client: httpx.AsyncClient, url: str, key: str | None, prompt: str, max_tokens: int
) -> tuple[int, float]:
    body = {
        "model": "keel",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for c in chunk.get("choices", []):
                if c["delta"].get("content") and ttft is None:
                    ttft = (time.perf_counter() - t0) * 1000
    return tokens, ttft or float("nan")


async def load(name: str, url: str, key: str | None, n: int, concurrency: int, max_tokens: int) -> Run:
    sem = asyncio.Semaphore(concurrency)
    ttfts: list[float] = []
    total = 0
    failed = 0
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency + 4)) as client:

        async def task(i: int) -> None:
            nonlocal total, failed
            async with sem:
                try:
                    tok, ttft = await one(client, url, key, PROMPTS[i % len(PROMPTS)], max_tokens)
                    total += tok
                    ttfts.append(ttft)
                except httpx.HTTPError:
                    failed += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(task(i) for i in range(n)))
        seconds = time.perf_counter() - t0
    return Run(name, concurrency, total, seconds, ttfts, failed)


def prefill_rows(db_path: Path, rows: int) -> float:
    from keel.store.db import connect

    con = connect(db_path)
    t0 = time.perf_counter()
    con.execute(
        """INSERT INTO requests (request_id, created_at, key_id, model, checkpoint_version, stream, messages,
                                 response_text, route, prompt_tokens, completion_tokens, ttft_ms, latency_ms, status_code)
           SELECT 'old-' || i, now() - INTERVAL (i) SECOND, 'key_bench', 'keel', 'base', true,
                  '[{"role":"user","content":"question ' || i || '"}]', 'answer number ' || i || ' ' || repeat('x', 200),
                  'direct', 30, 64, 20.0, 900.0, 200
           FROM range(?) t(i)""",
        [rows],
    )
    con.close()
    return time.perf_counter() - t0


def hf_generate(model_dir: Path, n: int, batch: int, max_tokens: int) -> Run:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for i in range(n)
    ]
    total = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n, batch):
            enc = tok(prompts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False)
            total += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
    return Run("transformers generate", batch, total, time.perf_counter() - t0, [], 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=48, help="requests per variant per concurrency level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best round counts")
    ap.add_argument(
        "--prefill", type=int, default=1_000_000, help="rows already in the log for the big-log variant"
    )
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args()

    from keel.checkpoints.basemodel import ensure_base

    cache = Path.home() / ".cache" / "keel-test" / "checkpoints"
    model_dir = ensure_base(cache, None)
    work = Path(tempfile.mkdtemp(prefix="keel-bench-"))
    main_p = PlatformProcess(
        data_dir=work / "on", model_dir=model_dir, overrides=["router.enabled=false"]
    ).start()
    engine = main_p.engine_urls()[0]
    ext = f'engine.external_urls=["{engine}"]'
    # the gateway alone is measured here; routing + retrieval has its own benchmark (bench/rag.py)
    big_dir = work / "big"
    big_dir.mkdir()
    prefill_s = prefill_rows(big_dir / DB_FILE, args.prefill)
    off_p = PlatformProcess(
        data_dir=work / "off",
        model_dir=model_dir,
        overrides=[ext, "router.enabled=false", "requestlog.enabled=false"],
    ).start()
    big_p = PlatformProcess(
        data_dir=big_dir, model_dir=model_dir, overrides=[ext, "router.enabled=false"]
    ).start()
    results: dict[tuple[str, int], Run] = {}
    try:
        variants = [
            ("direct vLLM", engine, None),
            ("gateway, log on", main_p.url, main_p.create_key("bench")),
            ("gateway, log off", off_p.url, off_p.create_key("bench")),
            (f"gateway, log on, {args.prefill:,} rows", big_p.url, big_p.create_key("bench")),
        ]
        asyncio.run(load("warmup", engine, None, 8, 8, 8))
        for _round in range(args.rounds):
            for conc in (1, 16):
                n = max(conc * 3, args.requests // (4 if conc == 1 else 1))
                for name, url, key in variants:
                    run = asyncio.run(load(name, url, key, n, conc, args.max_tokens))
                    best = results.get((name, conc))
                    if best is None or run.tok_s > best.tok_s:
                        results[(name, conc)] = run
                    print(
                        f"  round {_round} c={conc:2d} {name:36s} {run.tok_s:7.1f} tok/s  ttft p50 {run.p(0.5):6.1f} ms",
                        flush=True,
                    )
        logged = main_p.admin("GET", "/admin/requests/count").json()["count"]
    finally:
        for p in (big_p, off_p, main_p):
            p.stop()
    hf = None if args.skip_hf else hf_generate(model_dir, 32, 16, args.max_tokens)

    lines = [
        "| variant | concurrency | tokens/s | ratio vs direct | TTFT p50 ms | TTFT p95 ms | failed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    summary = {}
    for conc in (1, 16):
        d = results[("direct vLLM", conc)]
        for name, _, _ in variants:
            r = results[(name, conc)]
            lines.append(
                f"| {name} | {conc} | {r.tok_s:.1f} | {r.tok_s / d.tok_s:.3f} | {r.p(0.5):.1f} | {r.p(0.95):.1f} | {r.failed} |"
            )
            summary[f"{name} c{conc}"] = {
                "tok_s": r.tok_s,
                "ttft_p50": r.p(0.5),
                "ttft_p95": r.p(0.95),
                "ratio": r.tok_s / d.tok_s,
            }
        g = results[("gateway, log on", conc)]
        lines.append(
            f"| *added TTFT (gateway − direct)* | {conc} | | | {g.p(0.5) - d.p(0.5):+.1f} | {g.p(0.95) - d.p(0.95):+.1f} | |"
        )
    if hf:
        v16 = results[("direct vLLM", 16)]
        lines.append(
            f"| transformers generate (batch 16) | 16 | {hf.tok_s:.1f} | vLLM/HF = {v16.tok_s / hf.tok_s:.2f}× | | | |"
        )
        summary["hf_generate_b16"] = {"tok_s": hf.tok_s, "vllm_over_hf": v16.tok_s / hf.tok_s}
    on16, off16 = results[("gateway, log on", 16)], results[("gateway, log off", 16)]
    big16 = results[(variants[3][0], 16)]
    lines.append("")
    lines.append(
        f"log on / log off at c=16: {on16.tok_s / off16.tok_s:.3f}; log on with {args.prefill:,} rows / log off: {big16.tok_s / off16.tok_s:.3f}"
    )
    lines.append(
        f"rows written by the log-on platform: {logged}; {args.prefill:,}-row prefill took {prefill_s:.1f} s"
    )
    table = "\n".join(lines)
    print(table)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(
        json.dumps({"args": vars(args), "summary": summary, "table": table}, indent=2)
    )


if __name__ == "__main__":
    main()
