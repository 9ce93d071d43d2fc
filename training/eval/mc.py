"""Multiple-choice scoring by the log-likelihood of the answer letters, one forward pass per question.

All four continuations " A".." D" are single tokens after the same context, so the log-probabilities of
the four letters at the last context position equal lm-eval's four loglikelihood requests (which run
the context four times). Questions of a subject share the description and k-shot exemplars: that
common token prefix is run once and its KV cache reused for every batch of the subject.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from training.eval.data import LETTERS, EvalDataError, MCBenchmark
from training.eval.model import ScoringModel
from training.eval.prompts import build_prompt


@dataclass
class MCScoreConfig:
    shots: int = 0  # 0 or 5 (dev exemplars, lm-eval's first_n sampler)
    batch_tokens: int = 2048  # new tokens per forward pass (padding included); bounds memory and latency
    max_batch: int = 32
    min_shared_prefix: int = 8  # shorter shared prefixes are not worth a cache copy


def letter_token_ids(tokenizer) -> list[int]:
    ids = []
    for letter in LETTERS:
        toks = tokenizer(" " + letter, add_special_tokens=False).input_ids
        if len(toks) != 1:
            raise EvalDataError(
                f"tokenizer encodes ' {letter}' as {len(toks)} tokens; letter scoring needs one"
            )
        ids.append(toks[0])
    return ids


def _common_prefix_len(seqs: list[list[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return n


def score_prompts(
    sm: ScoringModel, prompts: list[str], cfg: MCScoreConfig, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Log-probabilities (n, 4) of " A".." D" after each prompt."""
    import torch

    model, tok = sm.model, sm.tokenizer
    letters = torch.tensor(letter_token_ids(tok))
    # lm-eval (hf backend) adds no BOS for these models; tokenise the whole prompt like it does.
    seqs = [tok(p, add_special_tokens=False).input_ids for p in prompts]
    # Reuse the longest token prefix all prompts share (tokenising the whole prompt first and then
    # splitting keeps the tokens identical to lm-eval's even where a boundary would merge differently).
    shared = _common_prefix_len(seqs) if len(seqs) > 1 else 0
    shared = min(shared, min(len(s) for s in seqs) - 1)
    if shared < cfg.min_shared_prefix:
        shared = 0
    decoder = model.get_decoder()
    out = np.zeros((len(seqs), 4), dtype=np.float64)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with torch.inference_mode():
        prefix_cache = None
        if shared:
            prefix_cache = decoder(input_ids=torch.tensor([seqs[0][:shared]]), use_cache=True).past_key_values
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        start = 0
        while start < len(order):
            # Grow the batch while (rows x longest row) stays within the token budget: sorting by length
            # keeps padding small. Right padding needs no attention mask: real tokens never see pads.
            end = start + 1
            while end < len(order) and end - start < cfg.max_batch:
                longest = len(seqs[order[end]]) - shared
                if (end - start + 1) * longest > cfg.batch_tokens:
                    break
                end += 1
            idx = order[start:end]
            rows = [seqs[i][shared:] for i in idx]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            for j, r in enumerate(rows):
                ids[j, : len(r)] = torch.tensor(r)
            kwargs = {}
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(rows))
                kwargs["past_key_values"] = cache
            hidden = decoder(input_ids=ids, use_cache=prefix_cache is not None, **kwargs).last_hidden_state
            last = torch.tensor([len(r) - 1 for r in rows])
            # Only the last position's logits are needed: project those rows, not (batch x width x vocab).
            logits = sm.project(hidden[torch.arange(len(rows)), last])
            logprobs = torch.log_softmax(logits, dim=-1)[:, letters]
            out[idx] = logprobs.double().numpy()
            if progress:
                progress(len(idx))
            start = end
    return out


class PromptScorer(Protocol):
    def score_prompts(
        self, prompts: list[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray: ...


def score_benchmark(
    sm: ScoringModel | None,
    bench: MCBenchmark,
    cfg: MCScoreConfig,
    progress: Callable[[int], None] | None = None,
    scorer: PromptScorer | None = None,
) -> list[dict]:
    """Per-item records: id, subject, answer, pred, correct, p_correct (renormalised over A-D), logprobs.

    ``scorer`` (e.g. the vLLM backend) replaces the transformers model ``sm`` for the letter scores.
    """
    # 0-shot prompts share only the description's first words: score all subjects together so batches
    # fill up (a gate suite has ~10 questions per subject). k-shot prompts share the long exemplar
    # prefix within a subject: score per subject so that prefix is computed once and reused.
    items = [(s, it) for s in bench.subjects.values() for it in s.test]
    groups = (
        [items] if cfg.shots == 0 else [[(s, it) for it in s.test] for s in bench.subjects.values() if s.test]
    )
    records = []
    for group in groups:
        prompts = [build_prompt(bench, s, item, cfg.shots) for s, item in group]
        if scorer is not None:
            lp = scorer.score_prompts(prompts, progress)
        else:
            assert sm is not None
            lp = score_prompts(sm, prompts, cfg, progress)
        # Probability of the correct letter among the four: a continuous score that moves before accuracy.
        renorm = np.exp(lp - lp.max(axis=1, keepdims=True))
        renorm /= renorm.sum(axis=1, keepdims=True)
        for (_, item), row, p in zip(group, lp, renorm, strict=True):
            pred = int(np.argmax(row))  # ties go to the first letter, as lm-eval's argmax does
            records.append(
                {
                    "id": item.id,
                    "subject": item.subject,
                    "answer": LETTERS[item.answer],
                    "pred": LETTERS[pred],
                    "correct": pred == item.answer,
                    "p_correct": round(float(p[item.answer]), 6),
                    "logprobs": [round(float(x), 5) for x in row],
                }
            )
    return records


def summarize(bench: MCBenchmark, records: list[dict]) -> dict:
    """Accuracy and mean continuous score per subject, per category and overall (micro average)."""

    def agg(rs: list[dict]) -> dict:
        n = len(rs)
        return {
            "n": n,
            "acc": float(np.mean([r["correct"] for r in rs])) if n else None,
            "score": float(np.mean([r["p_correct"] for r in rs])) if n else None,
        }

    by_subject: dict[str, list[dict]] = {}
    for r in records:
        by_subject.setdefault(r["subject"], []).append(r)
    by_category: dict[str, list[dict]] = {}
    for name, rs in by_subject.items():
        for cat in bench.subjects[name].categories:
            by_category.setdefault(cat, []).extend(rs)
    letters = {L: float(np.mean([r["pred"] == L for r in records])) if records else 0.0 for L in LETTERS}
    return {
        "overall": agg(records),
        "categories": {k: agg(v) for k, v in sorted(by_category.items())},
        "subjects": {k: agg(v) for k, v in sorted(by_subject.items())},
        "pred_letter_share": letters,
    }
