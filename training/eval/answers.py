"""The answers suite: a checkpoint answers held-out domain questions, the judge scores the answers.

The prompts are **frozen** by the platform (``keel eval prompts``, or the cycle's evaluate step:
``platform/keel/cycle/answers_prompts.py``), because they must be exactly what serving builds (domain
template + retrieved chunks) and ``training`` cannot import ``serving``. Each line of the prompts file:

    {"id": "faq-12", "question": "...", "lang": "zh", "reference": "...",
     "messages": [{"role": "system", "content": "...Documents: ..."}, {"role": "user", "content": "..."}],
     "sampling": {"repetition_penalty": 1.2}, "sources": ["faq/sql-faq.md", ...]}

Here the file is plain data: its sha256 goes into the eval JSON (and the eval's fingerprint), so two
checkpoints are compared only on byte-identical prompts. Each checkpoint answers greedily (temperature 0,
the domain route's other sampling defaults kept, e.g. its repetition penalty) with the chat template of
its own folder, as the vLLM server that serves it does, on the eval's engine (vLLM or transformers).
The answers are scored by :mod:`training.eval.judge` against the references; the gate compares the
per-question scores of candidate and baseline with a paired bootstrap (``answers.score``, points).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keelcommon.jsonl import iter_jsonl
from training.eval.data import EvalDataError
from training.eval.judge import judge

# what the engine receives besides the prompt: greedy decoding, the route's penalties only
_SAMPLING_KEYS = ("repetition_penalty", "frequency_penalty", "presence_penalty")


@dataclass
class AnswerPrompt:
    id: str
    question: str
    lang: str | None
    reference: str
    messages: list[dict[str, Any]]
    sampling: dict[str, float] = field(default_factory=dict)


@dataclass
class PromptSet:
    path: Path
    sha256: str
    prompts: list[AnswerPrompt]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_prompts(path: Path) -> PromptSet:
    """Read and check a frozen prompts file (one line per question); a bad line is a one-line error."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EvalDataError(
            f"{path}: answers prompts file not found (freeze it with `keel eval prompts`)"
        ) from None
    out, seen = [], set()
    for n, row in iter_jsonl(path, EvalDataError, text=raw.decode("utf-8")):
        for key in ("id", "question", "reference", "messages"):
            if not row.get(key):
                raise EvalDataError(f"{path}:{n}: missing field {key!r}")
        msgs = row["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and "role" in m for m in msgs):
            raise EvalDataError(f"{path}:{n}: messages must be a list of chat messages")
        if str(row["id"]) in seen:
            raise EvalDataError(f"{path}:{n}: duplicate id {row['id']!r}")
        seen.add(str(row["id"]))
        sampling = {k: float(v) for k, v in (row.get("sampling") or {}).items() if k in _SAMPLING_KEYS}
        out.append(
            AnswerPrompt(str(row["id"]), row["question"], row.get("lang"), row["reference"], msgs, sampling)
        )
    if not out:
        raise EvalDataError(f"{path}: no prompts")
    return PromptSet(path, hashlib.sha256(raw).hexdigest(), out)


def render(tokenizer, messages: list[dict[str, Any]]) -> list[int]:
    """The prompt's token ids as the serving engine renders it: the checkpoint's chat template with the
    generation prompt (what vLLM's OpenAI server applies to a chat completion)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False).input_ids


def _generate_transformers(sm, prompts: list[AnswerPrompt], max_tokens: int, progress) -> list[dict]:
    import torch

    out = []
    tok = sm.tokenizer
    limit = sm.max_length - max_tokens
    with torch.inference_mode():
        for p in prompts:
            ids = render(tok, p.messages)
            if len(ids) > limit:
                out.append({"text": "", "tokens": 0, "prompt_tokens": len(ids), "finish": "prompt_too_long"})
            else:
                x = torch.tensor([ids])
                y = sm.model.generate(
                    x,
                    attention_mask=torch.ones_like(x),
                    max_new_tokens=max_tokens,
                    do_sample=False,
                    repetition_penalty=p.sampling.get("repetition_penalty", 1.0),
                    pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                )
                new = y[0, len(ids) :].tolist()
                eos = tok.eos_token_id
                done = eos is not None and eos in new
                new = new[: new.index(eos)] if done else new
                out.append(
                    {
                        "text": tok.decode(new, skip_special_tokens=True),
                        "tokens": len(new),
                        "prompt_tokens": len(ids),
                        "finish": "stop" if done else "length",
                    }
                )
            if progress:
                progress(1)
    return out


def generate(sm, scorer, prompts: list[AnswerPrompt], max_tokens: int, progress=None) -> list[dict]:
    """Greedy answers, one per prompt: text, generated tokens, prompt tokens, finish reason."""
    if scorer is not None:
        return scorer.generate(
            [p.messages for p in prompts], [p.sampling for p in prompts], max_tokens, progress=progress
        )
    return _generate_transformers(sm, prompts, max_tokens, progress)


def summarize(items: list[dict], by_language: bool = True) -> dict:
    """Mean judge score and what went wrong; with ``by_language``, the same per question language."""
    n = len(items)
    out: dict[str, Any] = {
        "n": n,
        "score": sum(i["score"] for i in items) / n if n else None,
        "other_language": sum(i["reason"] == "language" for i in items),
        "empty": sum(i["reason"] == "empty" for i in items),
        "length_capped": sum(i.get("finish") == "length" for i in items),
    }
    if by_language:
        langs = sorted({str(i.get("lang")) for i in items})
        out["by_language"] = {
            lang: summarize([i for i in items if str(i.get("lang")) == lang], False) for lang in langs
        }
    return out


def run_answers(ps: PromptSet, max_tokens: int, sm=None, scorer=None, progress=None) -> dict:
    """The eval JSON's ``answers`` part: per question the answer and its judgement; the prompts' hash."""
    j = judge()
    gens = generate(sm, scorer, ps.prompts, max_tokens, progress)
    items = []
    for p, g in zip(ps.prompts, gens, strict=True):
        verdict = j.score(g["text"], p.reference, lang=p.lang)
        items.append(
            {
                "id": p.id,
                "question": p.question,
                "lang": p.lang,
                "reference": p.reference,
                "answer": g["text"],
                "score": verdict.score,
                "chrf": verdict.chrf,
                "reason": verdict.reason,
                "tokens": g["tokens"],
                "prompt_tokens": g["prompt_tokens"],
                "finish": g["finish"],
            }
        )
    return {
        "prompts": str(ps.path),
        "sha256": ps.sha256,
        "judge": j.signature,
        "max_tokens": max_tokens,
        "summary": summarize(items),
        "items": items,
    }
