"""What a checkpoint's weights answer to a few fixed probes, and whether an engine answers the same.

vLLM has open reports of weight reloads that keep serving the old weights without an error (vllm#32718),
so a swap does not trust a 200 from ``reload_weights`` or a warm-up completion: it asks the engine for the
probes below and compares the answers with the fingerprint the registry stored for the checkpoint.

A probe is a fixed prompt given as token ids (the checkpoint's own tokenizer, so the engine tokenizes
nothing). The fingerprint holds, per probe, the log-probability of every prompt token given the ones
before it (teacher-forced: these never diverge between two correct backends, so they carry most of the
check) and the greedy continuation with its log-probabilities. The reference is computed with
transformers in a child process (``python -m serving.engine.fingerprint DIR``): the platform process
never loads torch, and the same numbers come out whichever engine later serves the weights.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import httpx
from pydantic import BaseModel

from serving.engine.client import EngineClient
from serving.engine.pool import Endpoint
from serving.errors import ServingError

# Short, mixed prompts (prose, code, Chinese, a list): a change anywhere in the weights moves some of
# these log-probabilities. Changing them invalidates every stored fingerprint (see VERSION).
PROBES: tuple[str, ...] = (
    "The capital of France is Paris. The capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "TiDB 是一个分布式 SQL 数据库，它支持",
    "Monday, Tuesday, Wednesday, Thursday,",
)
MAX_TOKENS = 8
VERSION = 1
# Measured: vLLM CPU fp32 (eager) vs transformers fp32 on the embedded model differ by at most ~2e-4
# per token (docs/BENCHMARKS.md); scaling one projection by 1.02 moves them by ~0.05. 0.02 sits between.
DEFAULT_TOLERANCE = 0.02


class FingerprintError(ServingError, RuntimeError):
    """The fingerprint could not be computed or asked for; one line."""


class ProbeAnswer(BaseModel):
    prompt_ids: list[int]
    prompt_logprobs: list[float]  # for prompt_ids[1:], each given the ones before it
    tokens: list[int]  # greedy continuation
    logprobs: list[float]  # of each greedy token


class Fingerprint(BaseModel):
    version: int = VERSION
    dtype: str = "float32"
    computed_by: str = "transformers"
    probes: list[ProbeAnswer]


def compute(model_dir: Path, dtype: str = "float32") -> Fingerprint:
    """The reference answers of the weights in `model_dir` (transformers, greedy, CPU). Loads torch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    model.eval()
    out = []
    # one thread: this runs beside serving engines on small hosts, and two threads fought them (~4x slower)
    torch.set_num_threads(1)
    out = []
    with torch.inference_mode():
        for text in PROBES:
            ids = tok(text)["input_ids"]
            res = model(torch.tensor([ids]), use_cache=True)
            logp = torch.log_softmax(res.logits[0].float(), dim=-1)
            prompt_lp = [logp[i - 1, ids[i]].item() for i in range(1, len(ids))]
            tokens: list[int] = []
            lps: list[float] = []
            last, past = logp[-1], res.past_key_values
            for _ in range(MAX_TOKENS):
                nxt = int(last.argmax())
                tokens.append(nxt)
                lps.append(last[nxt].item())
                if nxt == tok.eos_token_id:
                    break
                res = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                last, past = torch.log_softmax(res.logits[0, -1].float(), dim=-1), res.past_key_values
            out.append(ProbeAnswer(prompt_ids=ids, prompt_logprobs=prompt_lp, tokens=tokens, logprobs=lps))
    return Fingerprint(dtype=dtype, computed_by="transformers", probes=out)


def compute_in_child(model_dir: Path, dtype: str = "float32", timeout: float = 600) -> Fingerprint:
    """compute() in a child process, so the caller never imports torch (and gets its memory back)."""
    try:
        r = subprocess.run(
            [sys.executable, "-m", "serving.engine.fingerprint", str(model_dir), "--dtype", dtype],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise FingerprintError(f"fingerprint of {model_dir} took over {timeout:.0f} s") from e
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise FingerprintError(f"fingerprint of {model_dir} failed: {last}")
    return Fingerprint.model_validate_json(r.stdout.strip().splitlines()[-1])


async def ask_engine(
    engine: EngineClient, ep: Endpoint, reference: Fingerprint, timeout: float = 120
) -> Fingerprint:
    """The engine's answers to the reference's probes (the same prompt ids), greedy, on ``ep`` itself and
    not counted by the balancer (it may not be in rotation yet). All probes at once: the engine batches
    them, so a swap's hold grows by one short generation, not four."""
    url = ep.url

    async def one(ref: ProbeAnswer) -> ProbeAnswer:
        body = {
            "prompt": ref.prompt_ids,
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "logprobs": 0,
            "prompt_logprobs": 0,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            "ignore_eos": False,
        }
        try:
            r = await engine.complete(
                body, endpoint=ep, counted=False, path="/v1/completions", timeout_s=timeout
            )
        except httpx.HTTPError as e:
            raise FingerprintError(f"probe request to {url} failed: {type(e).__name__}") from e
        if r.status != 200 or not r.ok:
            raise FingerprintError(f"probe request to {url} answered {r.status}: {str(r.data)[:200]}")
        choice = r.data["choices"][0]
        tokens = list(choice.get("token_ids") or [])
        lps = [float(x) for x in (choice.get("logprobs") or {}).get("token_logprobs") or []]
        prompt_lp = []
        # vLLM: one entry per prompt token, None for the first; each a {token_id: {logprob, ...}} dict
        entries = (choice.get("prompt_logprobs") or [None])[1:]
        for tid, entry in zip(ref.prompt_ids[1:], entries, strict=False):
            lp = (entry or {}).get(str(tid))
            prompt_lp.append(float(lp["logprob"]) if lp else -math.inf)
        return ProbeAnswer(prompt_ids=ref.prompt_ids, prompt_logprobs=prompt_lp, tokens=tokens, logprobs=lps)

    probes = await asyncio.gather(*(one(ref) for ref in reference.probes))
    return Fingerprint(dtype=reference.dtype, computed_by=url, probes=list(probes))


def compare(expected: Fingerprint, got: Fingerprint, tolerance: float = DEFAULT_TOLERANCE) -> str | None:
    """None when `got` answers like `expected` within `tolerance` (absolute, per log-probability);
    otherwise the first difference, in one line."""
    if len(expected.probes) != len(got.probes):
        return f"{len(got.probes)} probe answers, expected {len(expected.probes)}"
    worst = 0.0
    for i, (e, g) in enumerate(zip(expected.probes, got.probes, strict=True)):
        if len(e.prompt_logprobs) != len(g.prompt_logprobs):
            return f"probe {i}: {len(g.prompt_logprobs)} prompt log-probabilities, expected {len(e.prompt_logprobs)}"
        for j, (a, b) in enumerate(zip(e.prompt_logprobs, g.prompt_logprobs, strict=True)):
            d = abs(a - b)
            worst = max(worst, d)
            if not d <= tolerance:  # `not <=` so that NaN counts as a mismatch
                return f"probe {i}: prompt token {j + 1} log-probability {b:.4f}, expected {a:.4f} (±{tolerance})"
        for j, (te, tg) in enumerate(zip(e.tokens, g.tokens, strict=False)):
            le, lg = e.logprobs[j], g.logprobs[j] if j < len(g.logprobs) else math.nan
            if not abs(le - lg) <= tolerance:
                return (
                    f"probe {i}: greedy token {j} log-probability {lg:.4f}, expected {le:.4f} (±{tolerance})"
                )
            if te != tg:
                # a near tie (both top-1 at the same probability) may break either way on two correct
                # backends; what follows it is then a different text, so compare no further
                break
        else:
            if len(e.tokens) != len(g.tokens):
                return f"probe {i}: {len(g.tokens)} greedy tokens, expected {len(e.tokens)}"
    return None


def max_difference(expected: Fingerprint, got: Fingerprint) -> float:
    """Largest absolute log-probability difference over the prompt tokens (for measurements)."""
    return max(
        (
            abs(a - b)
            for e, g in zip(expected.probes, got.probes, strict=True)
            for a, b in zip(e.prompt_logprobs, g.prompt_logprobs, strict=True)
        ),
        default=0.0,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="Print a checkpoint folder's probe fingerprint as one JSON line."
    )
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    fp = compute(args.model_dir, args.dtype)
    sys.stdout.write(json.dumps(fp.model_dump()) + "\n")


if __name__ == "__main__":
    main()
