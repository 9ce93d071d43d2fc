"""Letter scoring on an in-process vLLM engine: one request per question, four log-probabilities back.

``SamplingParams(max_tokens=1, logprob_token_ids=[" A".." D"])`` returns the raw (full-vocabulary)
log-probabilities of exactly the four letter tokens at the last prompt position, so one request gives
what lm-eval's four loglikelihood requests give. Prompts go in as token ids (tokenised exactly as the
transformers path does) and automatic prefix caching reuses the shared k-shot prefix of a subject.
Letters do not use prompt log-probabilities (they project every prompt position onto the vocabulary
and bypass the prefix cache); perplexity needs exactly that, so held-out texts use them
(``prompt_logprobs=0``: the log-probability of each actual next token).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def _environment(defaults: dict[str, str]) -> Iterator[None]:
    """Set variables the caller has not set, only for the block: the process (a test session, the CLI)
    must not pass them on to engines it starts later."""
    added = {k: v for k, v in defaults.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


MAX_CONTEXT = 8192


def _model_context(path: Path) -> int:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path)
    return int(getattr(cfg, "max_position_embeddings", None) or 2048)


class VLLMScorer:
    def __init__(
        self,
        path: Path,
        dtype: str = "float32",
        max_model_len: int | None = None,
        kv_cache_gib: int = 1,
        reserved_cpus: int | None = 0,
    ):
        # vLLM is imported here only: it is heavy, and the transformers backend must work without it.
        from transformers import AutoTokenizer
        from vllm import LLM

        from training.eval.mc import letter_token_ids

        env = {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib)}
        if reserved_cpus is not None:
            # vLLM's CPU auto-binding keeps one core free for an API server; this engine is in-process and
            # has none, so by default it may bind every core (1.8x faster on 2 cores).
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(reserved_cpus)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if max_model_len is None:
            # The model's own context (5-shot MMLU prompts reach ~2,800 tokens), capped so the KV cache of
            # one full-length sequence fits kv_cache_gib for long-context models.
            max_model_len = min(_model_context(path), MAX_CONTEXT)
        # A prompt plus the one token every request generates must fit the engine's context.
        self.max_length = max_model_len - 1
        self.letters = letter_token_ids(self.tokenizer)
        with _environment(env):  # read while the engine's processes start; the caller's environment wins
            self.llm = LLM(
                model=str(path),
                dtype=dtype,
                enforce_eager=True,  # ~25 s start instead of ~2 min of torch.compile on CPU (FACTS.md)
                enable_prefix_caching=True,
                max_model_len=max_model_len,
            )

    def score_prompts(
        self, prompts: list[str], progress: Callable[[int], None] | None = None, chunk: int = 256
    ) -> np.ndarray:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        sp = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=self.letters)
        out = np.zeros((len(prompts), 4), dtype=np.float64)
        for start in range(0, len(prompts), chunk):
            part = prompts[start : start + chunk]
            # Longer than the context: keep the end, as lm-eval does (the question and "Answer:" are last).
            reqs = [
                TokensPrompt(
                    prompt_token_ids=self.tokenizer(p, add_special_tokens=False).input_ids[-self.max_length :]
                )
                for p in part
            ]
            for j, o in enumerate(self.llm.generate(reqs, sp, use_tqdm=False)):
                lp = o.outputs[0].logprobs[0]
                out[start + j] = [lp[t].logprob for t in self.letters]
            if progress:
                progress(len(part))
        return out

    def prompt_logprobs(
        self, prompts: list[list[int]], progress: Callable[[int], None] | None = None, chunk: int = 64
    ) -> list[np.ndarray]:
        """Per token list: the log-probability of each token after the first, given the ones before it."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        for ids in prompts:
            if not 2 <= len(ids) <= self.max_length:
                raise ValueError(f"prompt of {len(ids)} tokens: needs 2..{self.max_length}")
        sp = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        out: list[np.ndarray] = []
        for start in range(0, len(prompts), chunk):
            part = prompts[start : start + chunk]
            reqs = [TokensPrompt(prompt_token_ids=ids) for ids in part]
            for ids, o in zip(part, self.llm.generate(reqs, sp, use_tqdm=False), strict=True):
                plp = o.prompt_logprobs  # [None, {ids[1]: Logprob}, ...]: position 0 has no prediction
                out.append(np.array([plp[i][t].logprob for i, t in enumerate(ids) if i], dtype=np.float64))
            if progress:
                progress(sum(len(ids) for ids in part))
        return out

    def generate(
        self,
        conversations: list[list[dict]],
        sampling: list[dict[str, float]],
        max_tokens: int,
        progress: Callable[[int], None] | None = None,
    ) -> list[dict]:
        """Greedy answers to chat conversations, rendered with the checkpoint's chat template as the
        serving engine renders them (the answers suite). A prompt that leaves no room for ``max_tokens``
        is not sent: its answer is empty with finish ``prompt_too_long``."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from training.eval.answers import render

        ids = [render(self.tokenizer, c) for c in conversations]
        fits = [k for k, x in enumerate(ids) if len(x) + max_tokens <= self.max_length + 1]
        out = [{"text": "", "tokens": 0, "prompt_tokens": len(x), "finish": "prompt_too_long"} for x in ids]
        reqs = [TokensPrompt(prompt_token_ids=ids[k]) for k in fits]
        params = [SamplingParams(temperature=0.0, max_tokens=max_tokens, **sampling[k]) for k in fits]
        for k, o in zip(fits, self.llm.generate(reqs, params, use_tqdm=False), strict=True):
            c = o.outputs[0]
            out[k] = {
                "text": c.text,
                "tokens": len(c.token_ids),
                "prompt_tokens": len(ids[k]),
                "finish": c.finish_reason or "stop",
            }
        if progress:
            progress(len(ids))
        return out

    def close(self) -> None:
        engine = getattr(self.llm, "llm_engine", None)
        shutdown = getattr(engine, "shutdown", None) or getattr(
            getattr(engine, "engine_core", None), "shutdown", None
        )
        if shutdown:
            shutdown()
