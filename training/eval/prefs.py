"""The preference margin on held-out mined pairs: does a checkpoint find the answers users preferred more
likely than the ones they rejected, on prompts no stage trained on?

The pairs are the flywheel export's ``prefs`` part (TRL's conversational preference format: ``prompt``,
``chosen``, ``rejected``), prompts the export held out of every training part. Per pair:

    margin = log p(chosen | prompt) - log p(rejected | prompt)

summed over the answer's tokens, the prompt rendered with the checkpoint's chat template and the answer as
its assistant turn (what TRL's DPOTrainer scores). The gate compares candidate and baseline pair by pair:
the mean difference of the margins is DPO's implicit reward margin of the candidate with the baseline as
the reference model (beta = 1), in nats (``prefs.margin``); ``prefs.win`` is the share of pairs whose chosen
answer is the likelier one, in points. The file's sha256 goes into the eval JSON and its fingerprint, so two
checkpoints are compared only on the same pairs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keelcommon.jsonl import iter_jsonl
from training.eval.answers import render
from training.eval.data import EvalDataError


@dataclass
class PrefPair:
    id: str
    prompt: list[dict[str, Any]]
    chosen: str
    rejected: str


@dataclass
class PrefSet:
    path: Path
    sha256: str
    pairs: list[PrefPair]


def _answer(row: dict, key: str, where: str) -> str:
    v = row.get(key)
    if isinstance(v, list) and v and isinstance(v[-1], dict):
        v = v[-1].get("content")
    if not isinstance(v, str) or not v:
        raise EvalDataError(f"{where}: {key!r} must be an assistant message with text")
    return v


def load_pairs(path: Path) -> PrefSet:
    """Read a preference file (TRL's format, one pair per line); a bad line is a one-line error."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EvalDataError(f"{path}: preference pairs file not found") from None
    pairs = []
    for n, row in iter_jsonl(path, EvalDataError, text=raw.decode("utf-8")):
        where = f"{path}:{n}"
        prompt = row.get("prompt")
        if not isinstance(prompt, list) or not prompt or not all(isinstance(m, dict) for m in prompt):
            raise EvalDataError(f"{where}: 'prompt' must be a list of chat messages")
        chosen, rejected = _answer(row, "chosen", where), _answer(row, "rejected", where)
        digest = hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        pairs.append(PrefPair(f"{n}:{digest[:12]}", prompt, chosen, rejected))
    if not pairs:
        raise EvalDataError(f"{path}: no preference pairs")
    return PrefSet(path, hashlib.sha256(raw).hexdigest(), pairs)


def encode(tokenizer, prompt: list[dict[str, Any]], answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids with the generation prompt, the answer's ids up to and including its end-of-turn)."""
    head = render(tokenizer, prompt)
    text = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": answer}], tokenize=False, add_generation_prompt=False
    )
    full = tokenizer(text, add_special_tokens=False).input_ids
    if full[: len(head)] == head:
        return head, full[len(head) :]
    # a template that renders the last turn differently: the answer's own tokens after the prompt
    return head, tokenizer(answer, add_special_tokens=False).input_ids


def _fit(head: list[int], tail: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Keep the answer whole where possible: drop the prompt's oldest tokens first, then the answer's end."""
    room = max_length - len(tail)
    if room < 1:
        return head[-1:], tail[: max_length - 1]
    return head[-room:], tail


def _logprobs_transformers(sm, seqs: list[tuple[list[int], list[int]]]) -> list[float]:
    import torch

    out = []
    decoder = sm.model.get_decoder()
    with torch.inference_mode():
        for head, tail in seqs:
            ids = torch.tensor([head + tail])
            hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state
            # position i predicts token i+1: the answer's tokens are predicted from len(head)-1 on
            logits = sm.project(hidden[0, len(head) - 1 : len(head) + len(tail) - 1])
            lp = torch.log_softmax(logits.double(), dim=-1)
            out.append(float(lp[torch.arange(len(tail)), torch.tensor(tail)].sum()))
    return out


def _logprobs_engine(scorer, seqs: list[tuple[list[int], list[int]]]) -> list[float]:
    lps = scorer.prompt_logprobs([head + tail for head, tail in seqs])
    return [float(np.sum(lp[len(lp) - len(tail) :])) for (_, tail), lp in zip(seqs, lps, strict=True)]


def run_prefs(ps: PrefSet, sm=None, scorer=None, progress=None) -> dict:
    """The eval JSON's ``prefs`` part: per pair the two log-probabilities and the margin."""
    tok = scorer.tokenizer if scorer is not None else sm.tokenizer
    limit = scorer.max_length if scorer is not None else sm.max_length
    seqs, sizes = [], []
    for p in ps.pairs:
        for answer in (p.chosen, p.rejected):
            head, tail = _fit(*encode(tok, p.prompt, answer), limit)
            seqs.append((head, tail))
            sizes.append(len(tail))
    lps = _logprobs_engine(scorer, seqs) if scorer is not None else _logprobs_transformers(sm, seqs)
    items = []
    for i, p in enumerate(ps.pairs):
        c, r = lps[2 * i], lps[2 * i + 1]
        items.append(
            {
                "id": p.id,
                "chosen_lp": c,
                "rejected_lp": r,
                "chosen_tokens": sizes[2 * i],
                "rejected_tokens": sizes[2 * i + 1],
                "margin": c - r,
                "win": float(c > r),
            }
        )
        if progress:
            progress(1)
    n = len(items)
    return {
        "pairs": str(ps.path),
        "sha256": ps.sha256,
        "summary": {
            "n": n,
            "margin": sum(i["margin"] for i in items) / n,
            "win": sum(i["win"] for i in items) / n,
        },
        "items": items,
    }
