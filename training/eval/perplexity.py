"""Token-weighted perplexity with a sliding window, and bits per byte.

Every text is scored from a single conditioning token (BOS/EOS, as lm-eval's rolling loglikelihood
does), so every real token is predicted. Texts longer than the window are scored in overlapping
windows where each token is predicted once, with up to ``window - stride`` tokens of context.
Bits per byte (total nats / ln 2 / UTF-8 bytes) does not depend on the tokenizer, so it compares
models with different tokenizers; perplexity per token does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from training.eval.model import ScoringModel, prefix_token_id


@dataclass
class PerplexityConfig:
    window: int = 1024  # tokens per forward pass (capped at the model's context)
    stride: int = 512  # new tokens per window after the first; window - stride tokens of context
    batch_tokens: int = 4096
    vocab_chunk: int = 256  # positions projected to the vocabulary at once (bounds memory)


def _windows(ids: list[int], window: int, stride: int) -> list[tuple[list[int], int]]:
    """(window ids, number of scored tokens at its end) covering every token after the first once."""
    segs, prev_end, n = [], 0, len(ids)
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        scored = end - prev_end if begin else end - 1
        if scored > 0:
            segs.append((ids[begin:end], scored))
        prev_end = end
        if end == n:
            break
    return segs


class WindowScorer(Protocol):
    """An engine that returns, for each token list, the log-probability of every token after the first
    (the vLLM backend: prompt log-probabilities)."""

    tokenizer: Any
    max_length: int

    def prompt_logprobs(
        self, prompts: list[list[int]], progress: Callable[[int], None] | None = None
    ) -> list[np.ndarray]: ...


def _segments(tokenizer, start_id: int, texts: list[str], window: int, stride: int):
    segs: list[tuple[int, list[int], int]] = []  # (text index, ids, scored)
    for i, text in enumerate(texts):
        ids = [start_id, *tokenizer(text, add_special_tokens=False).input_ids]
        segs.extend((i, w, s) for w, s in _windows(ids, window, stride))
    return segs


def _records(texts: list[str], nll: np.ndarray, ntok: np.ndarray) -> list[dict]:
    return [
        {"nll": float(nll[i]), "tokens": int(ntok[i]), "bytes": len(t.encode("utf-8"))}
        for i, t in enumerate(texts)
    ]


def score_texts(
    sm: ScoringModel | None,
    texts: list[str],
    cfg: PerplexityConfig | None = None,
    progress: Callable[[int], None] | None = None,
    scorer: WindowScorer | None = None,
) -> list[dict]:
    """Per text: nll (nats, summed), tokens (predicted), bytes (UTF-8).

    ``scorer`` (the vLLM backend) replaces the transformers model ``sm``; both score the same windows.
    """
    cfg = cfg or PerplexityConfig()
    if scorer is not None:
        return _score_with_engine(scorer, texts, cfg, progress)
    assert sm is not None
    import torch

    window = min(cfg.window, sm.max_length)
    stride = min(cfg.stride, window - 1)
    segs = _segments(sm.tokenizer, sm.prefix_token_id(), texts, window, stride)
    nll = np.zeros(len(texts))
    ntok = np.zeros(len(texts), dtype=np.int64)
    decoder = sm.model.get_decoder()
    order = sorted(range(len(segs)), key=lambda k: len(segs[k][1]))
    start = 0
    with torch.inference_mode():
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * len(segs[order[end]][1]) <= cfg.batch_tokens:
                end += 1
            batch = [segs[k] for k in order[start:end]]
            width = max(len(w) for _, w, _ in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            # Right padding without a mask: causal attention keeps pads out of the real positions.
            for j, (_, w, _) in enumerate(batch):
                ids[j, : len(w)] = torch.tensor(w)
            hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state
            token_nll = torch.zeros((len(batch), width - 1))
            for c in range(0, width - 1, cfg.vocab_chunk):
                logits = sm.project(hidden[:, c : min(c + cfg.vocab_chunk, width - 1)])
                targets = ids[:, c + 1 : c + 1 + logits.shape[1]]
                token_nll[:, c : c + logits.shape[1]] = torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), targets, reduction="none"
                )
            for j, (ti, w, scored) in enumerate(batch):
                # Targets are positions 1..len(w)-1; the scored ones are the last `scored` of them.
                nll[ti] += float(token_nll[j, len(w) - 1 - scored : len(w) - 1].double().sum())
                ntok[ti] += scored
            if progress:
                progress(sum(len(w) for _, w, _ in batch))
            start = end
    return _records(texts, nll, ntok)


def _score_with_engine(
    scorer: WindowScorer, texts: list[str], cfg: PerplexityConfig, progress: Callable[[int], None] | None
) -> list[dict]:
    window = min(cfg.window, scorer.max_length)
    stride = min(cfg.stride, window - 1)
    segs = _segments(scorer.tokenizer, prefix_token_id(scorer.tokenizer), texts, window, stride)
    token_lps = scorer.prompt_logprobs([w for _, w, _ in segs], progress)
    nll = np.zeros(len(texts))
    ntok = np.zeros(len(texts), dtype=np.int64)
    for (ti, _, scored), lps in zip(segs, token_lps, strict=True):
        nll[ti] -= float(lps[len(lps) - scored :].sum())  # the window's last `scored` targets are new
        ntok[ti] += scored
    return _records(texts, nll, ntok)


def summarize(records: list[dict]) -> dict:
    nll = sum(r["nll"] for r in records)
    tokens = sum(r["tokens"] for r in records)
    nbytes = sum(r["bytes"] for r in records)
    return {
        "docs": len(records),
        "tokens": tokens,
        "bytes": nbytes,
        "nll_per_token": nll / tokens if tokens else None,
        "ppl": math.exp(nll / tokens) if tokens else None,
        "bpb": nll / math.log(2) / nbytes if nbytes else None,
    }
