"""Dev check of the domain prompt's layout: where the answer-language line sits, judged on SEEN questions.

The feedback lift's first cycle answered 9 of 12 English questions in Chinese (the retrieved documents are
Chinese and the small model follows them rather than the "Answer in English." line that comes before
them). This replays the domain prompts a lift data dir served (its request log holds each request's
engine messages, retrieval included) with the language line moved, on one checkpoint, sampled as the
simulation samples, and judges every answer with the simulation's judge.

Only questions of the bank's ``seen`` split are used: the held-out split is what the lift reports on.

    python bench/answer_language.py --data-dir /var/tmp/keel-flywheel-lift \\
        --checkpoint /var/tmp/keel-flywheel-lift/checkpoints/cycle-...-kto --samples 4
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench/training.py would shadow the training package
QUESTIONS = REPO / "platform/keel/simulate/questions.jsonl"
_LINE = re.compile(r"^Answer in (Chinese|English)\.\n", re.M)


def layouts(system: str) -> dict[str, tuple[str, str]]:
    """The served system prompt and the candidates, built from it: (system prompt, text appended to the
    user's question)."""
    m = _LINE.search(system)
    if not m:
        raise SystemExit("the served system prompt has no 'Answer in ...' line: not this template")
    lang = m.group(1)
    rest = system[: m.start()] + system[m.end() :]
    native = "请用中文回答。" if lang == "Chinese" else "Answer in English."
    return {
        "served": (system, ""),
        "line_last": (rest.rstrip() + f"\n\nAnswer in {lang}.", ""),
        "line_last_native": (rest.rstrip() + f"\n\n{native}", ""),
        # the instruction as the last thing before the answer: in the user's turn, in the answer's language
        "user_suffix": (system, f"\n\n({native})"),
    }


def _serving_prompts(questions: list[str]) -> dict[str, list[dict]]:
    """The domain route's engine messages for ``questions`` over the data dir's index (KEEL_DATA_DIR), built
    by serving's own graph as the answers suite freezes its prompts."""
    import asyncio

    from keel.config import load_settings
    from keel.cycle.answers_prompts import DomainRoute, open_retriever

    from serving.router.graph import build_graph
    from serving.router.intents import load_intents

    settings = load_settings()
    rcfg = settings.router
    graph = build_graph(DomainRoute(), open_retriever(settings), load_intents(rcfg.intents_file), rcfg)

    async def plan() -> list[dict]:
        return [await graph.ainvoke({"messages": [{"role": "user", "content": q}]}) for q in questions]

    return {q: st["engine_messages"] for q, st in zip(questions, asyncio.run(plan()), strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--layouts", default="served,line_last,line_last_native")
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="also the seen questions the run never asked, prompted through serving's graph (KEEL_DATA_DIR)",
    )
    a = ap.parse_args()

    import duckdb
    from vllm import LLM, SamplingParams

    from training.eval.judge import judge

    bank = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    seen = {q["question"]: q for q in bank if q.get("split") == "seen" and q.get("kind") == "domain"}
    db = duckdb.connect(str(a.data_dir / "keel.duckdb"), read_only=True)
    prompts: dict[str, list[dict]] = {}
    for msgs, engine in db.execute(
        "SELECT messages, engine_messages FROM requests WHERE route = 'domain' AND engine_messages IS NOT NULL"
    ).fetchall():
        user = [m for m in json.loads(msgs) if m.get("role") == "user"]
        q = user[-1]["content"] if user else None
        if q in seen and q not in prompts:
            prompts[q] = json.loads(engine)
    print(f"{len(prompts)} seen domain questions with a logged prompt")
    if a.fresh:  # the seen questions the run never asked: their prompts as serving builds them now
        fresh = _serving_prompts([q for q in seen if q not in prompts])
        print(f"{len(fresh)} more seen domain questions, prompted through serving's graph")
        prompts |= fresh

    # on CPU this is the share of RAM the KV cache takes: most of it by default, which fails beside other work
    llm = LLM(model=str(a.checkpoint), max_model_len=4096, seed=0, gpu_memory_utilization=0.3)
    params = SamplingParams(
        temperature=0.7, max_tokens=64, n=a.samples
    )  # as the simulation asks; a per-request seed fails on CPU
    j = judge()
    results: dict[str, dict] = {}
    for name in a.layouts.split(","):
        convs, keys = [], []
        for q, msgs in prompts.items():
            system, suffix = layouts(msgs[0]["content"])[name]
            *turns, last = msgs[1:]
            convs.append(
                [{"role": "system", "content": system}, *turns, {**last, "content": last["content"] + suffix}]
            )
            keys.append(q)
        t = time.monotonic()
        outs = llm.chat(convs, params, use_tqdm=False)
        per_lang: dict[str, list] = {"zh": [], "en": []}
        for q, out in zip(keys, outs, strict=True):
            for o in out.outputs:
                jd = j.score(o.text, seen[q]["reference"], seen[q]["lang"])
                per_lang[seen[q]["lang"]].append(jd)
        results[name] = {
            lang: {
                "n": len(js),
                "score": round(statistics.fmean(x.score for x in js), 4) if js else None,
                "other_language": sum(x.reason == "language" for x in js),
            }
            for lang, js in per_lang.items()
        }
        print(name, json.dumps(results[name]), f"{time.monotonic() - t:.0f} s")
    if a.out:
        a.out.write_text(
            json.dumps({"checkpoint": str(a.checkpoint), "samples": a.samples, "results": results})
        )


if __name__ == "__main__":
    main()
