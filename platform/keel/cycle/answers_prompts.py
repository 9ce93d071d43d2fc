"""Freeze the answers suite's prompts: what serving would send the engine for each held-out question.

    keel eval prompts --out answers.jsonl        # the CLI (no platform needed: it opens the index itself)
    PlatformSteps.evaluate                        # the cycle, with the live router's retriever

The answers suite (training/eval/answers.py) must see exactly the prompt serving builds for a domain
question (the domain template + retrieved chunks), but ``training`` cannot import ``serving``. So the
platform, which may use both, builds the prompts once with serving's own routing graph (the domain route
taken for every question: these are domain questions, and a misrouted one would test the classifier,
not the answer) and writes them as data; both checkpoints then answer byte-identical prompts, and the
file's sha256 goes into each eval.

Questions: the held-out FAQ of the domain corpus (``faq_qa.jsonl``: never in training text, and mining
drops rows that contain them), a fixed subset ranked by a hash of (seed, id), Chinese questions whose
answers are 30-800 characters (a long table or code listing is no reference for a 128-token answer).
The reference is the FAQ answer with Markdown link targets and HTML comments removed.

The FAQ is Chinese, so ``eval.answers_en_questions`` adds English domain questions from
``answers_en.jsonl`` beside this module (written from the docs named in each row's ``source``, none of them
in the simulation's bank): the feedback lift's first cycle answered 9 of 12 English questions in Chinese
and no gate saw it. The gate reads them alone as ``answers_en.score``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.errors import KeelError

if TYPE_CHECKING:
    from keel.config import KeelSettings


MIN_REF, MAX_REF = 30, 800
ENGLISH_QUESTIONS = Path(__file__).with_name("answers_en.jsonl")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_CJK = re.compile(r"[\u4e00-\u9fff]")


class PromptsError(KeelError):
    """The answers suite's prompts cannot be built (no FAQ, no index)."""


def clean_reference(text: str) -> str:
    text = _COMMENT.sub("", text)
    text = _LINK.sub(r"\1", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def select_questions(faq: Path, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` FAQ rows, fixed by (seed, id): the same questions every cycle while the FAQ is unchanged."""
    if not faq.is_file():
        raise PromptsError(f"{faq}: held-out FAQ not found (set eval.data or eval.domain)")
    rows = []
    for line in faq.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        ref = clean_reference(str(r.get("answer", "")))
        q = str(r.get("question", "")).strip()
        if q and _CJK.search(q) and MIN_REF <= len(ref) <= MAX_REF:
            rows.append({"id": f"faq-{r['id']}", "question": q, "lang": "zh", "reference": ref})
    return _ranked(rows, n, seed)


def _ranked(rows: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    rank = lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).hexdigest()  # noqa: E731
    return sorted(sorted(rows, key=rank)[:n], key=lambda r: r["id"])


def select_english(n: int, seed: int = 0, path: Path = ENGLISH_QUESTIONS) -> list[dict[str, Any]]:
    """``n`` of the platform's English domain questions, fixed by (seed, id) like the FAQ's."""
    if n <= 0:
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            rows.append({k: r[k] for k in ("id", "question", "lang", "reference")})
    return _ranked(rows, n, seed)


class DomainRoute:
    """The classifier of the freezing graph: every question takes the domain route."""

    async def classify(self, text: str):
        from serving.router.classifier import Classification

        return Classification("domain", 1.0, {"domain": 1.0}, method="answers-suite")


def open_retriever(settings: KeelSettings):
    """A retriever over the platform's index, set up as the serving router sets up its own."""
    from serving.rag.retriever import Retriever
    from serving.router.intents import load_intents

    index = settings.rag_index_dir
    if not (index / "catalog.json").exists():
        raise PromptsError(f"{index}: no document index (run `keel index` or `keel up` first)")
    retriever = Retriever(index, settings.rag)
    retriever.set_reference(list(load_intents(settings.router.intents_file).intents["domain"].examples))
    return retriever


def freeze_prompts(
    settings: KeelSettings,
    out: Path,
    n: int,
    retriever=None,
    seed: int | None = None,
    n_en: int | None = None,
) -> dict[str, Any]:
    """Write the prompts file (atomically) and return {path, sha256, n, n_en, fallback}: ``n`` FAQ questions
    and ``n_en`` English ones (default: ``eval.answers_en_questions``); fallback: how many prompts had no
    retrieved documents (the domain route's fallback answers from the question alone)."""
    from serving.router.graph import build_graph
    from serving.router.intents import load_intents

    domain = settings.eval.resolved().get("domain")
    if domain is None:
        raise PromptsError(
            "no domain eval data (set eval.data or eval.domain): the answers suite needs its FAQ"
        )
    seed = settings.eval.seed if seed is None else seed
    rows = select_questions(Path(domain) / "faq_qa.jsonl", n, seed)
    if not rows:
        raise PromptsError(f"{domain}: no FAQ question fits the answers suite")
    english = select_english(settings.eval.answers_en_questions if n_en is None else n_en, seed)
    rows += english
    retriever = retriever or open_retriever(settings)
    rcfg = settings.router
    graph = build_graph(DomainRoute(), retriever, load_intents(rcfg.intents_file), rcfg)
    sampling = {k: v for k, v in rcfg.route_params("domain").items() if k.endswith("_penalty")}

    async def plan_all() -> list[dict[str, Any]]:
        return [await graph.ainvoke({"messages": [{"role": "user", "content": r["question"]}]}) for r in rows]

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        states = asyncio.run(plan_all())
    else:  # called from a coroutine: plan on a thread of its own rather than nest event loops
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as ex:
            states = ex.submit(asyncio.run, plan_all()).result()
    lines, fallback = [], 0
    for r, st in zip(rows, states, strict=True):
        fallback += bool(st.get("fallback"))
        row = {
            **r,
            "messages": st["engine_messages"],
            "sampling": sampling,
            "sources": [s["path"] for s in st.get("sources") or []],
        }
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return {
        "path": str(out),
        "sha256": hashlib.sha256(data).hexdigest(),
        "n": len(rows),
        "n_en": len(english),
        "fallback": fallback,
    }
