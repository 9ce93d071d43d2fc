"""Router benchmark: added classification latency, and what per-route generation defaults change.

    OMP_NUM_THREADS=1 python -P bench/router.py --parts latency
    OMP_NUM_THREADS=1 python -P bench/router.py --parts generation --index ~/.cache/keel-bench/rag-full
    OMP_NUM_THREADS=1 python -P bench/router.py --parts sources --index ~/.cache/keel-bench/rag-full

latency: the linear router (default) vs the nearest-examples router it replaced, on the hard test half's
messages, interleaved per message; each message classified with the query-embedding cache cleared
(what a request pays), and again with the embedding cached (the classifier's own cost). Medians.

generation: a fixed set of domain questions sent through the domain route's prompt (router.plan on the
given index) to a real vLLM engine with the embedded model, greedy, once per sampling setting; counts
answers that stop at max_tokens and answers that loop (a word 4-gram, or for Chinese a 6-character
run, repeated ≥ 4 times). Results go into docs/BENCHMARKS.md ("Router").
(-P: bench/serving.py would otherwise shadow the serving package.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

QUESTIONS = [  # fixed; written for this benchmark (not from the eval sets)
    "What is TiDB?",
    "Who develops TiDB?",
    "What is TiKV?",
    "How does TiDB handle transactions?",
    "What is TiFlash used for?",
    "How do I back up a TiDB cluster?",
    "TiDB 是什么？",
    "TiDB 是谁开发的？",
    "PD 在集群里起什么作用？",
    "TiCDC 是做什么的？",
    "怎么给 TiDB 集群扩容？",
    "TiDB 支持哪些事务模式？",
]
SETTINGS = {
    "none": {},
    "repetition_penalty 1.1": {"repetition_penalty": 1.1},
    "repetition_penalty 1.2": {"repetition_penalty": 1.2},
    "repetition_penalty 1.3": {"repetition_penalty": 1.3},
    "frequency_penalty 0.5": {"frequency_penalty": 0.5},
}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def loops(text: str, times: int = 4) -> bool:
    words = re.findall(r"[A-Za-z0-9_]+", text.lower())
    grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    if grams and grams.most_common(1)[0][1] >= times:
        return True
    cjk = re.sub(r"[^\u3400-\u9fff]", "", text)
    runs = Counter(cjk[i : i + 6] for i in range(len(cjk) - 5))
    return bool(runs) and runs.most_common(1)[0][1] >= times


def part_latency(rounds: int) -> dict:
    from serving.rag.embedder import load_embedder
    from serving.router.classifier import EmbeddingClassifier
    from serving.router.evaluate import load_labelled
    from serving.router.fit import TEST
    from serving.router.intents import load_intents
    from serving.router.linear import LinearClassifier, load_model

    emb = load_embedder()
    t = time.perf_counter()
    linear = LinearClassifier(load_model(), emb)
    linear_load_ms = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    knn = EmbeddingClassifier(load_intents(), emb, 0.80, 3)
    knn_load_ms = (time.perf_counter() - t) * 1000
    texts = [t for t, _ in load_labelled(TEST)]
    full: dict[str, list[float]] = {"linear": [], "knn": []}
    own: dict[str, list[float]] = {"linear": [], "knn": []}
    for _ in range(rounds):
        for text in texts:
            for name, clf in (("linear", linear), ("knn", knn)):
                emb.clear_cache()
                t = time.perf_counter()
                clf.classify_sync(text)
                full[name].append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                clf.classify_sync(text)  # embedding cached now
                own[name].append((time.perf_counter() - t) * 1000)
    med = lambda xs: round(statistics.median(xs), 3)  # noqa: E731
    return {
        "messages": len(texts) * rounds,
        "classify_ms_p50": {k: med(v) for k, v in full.items()},
        "classifier_only_ms_p50": {k: med(v) for k, v in own.items()},
        "added_ms_p50": round(med(full["linear"]) - med(full["knn"]), 3),
        "start_ms": {
            "linear (load model)": round(linear_load_ms, 1),
            "knn (embed examples)": round(knn_load_ms, 1),
        },
        "load": load(),
    }


def part_generation(index: Path, max_tokens: int) -> dict:
    import httpx
    from keel.checkpoints.basemodel import ensure_base

    from serving.config import EngineConfig
    from serving.engine.process import EngineProcess, find_free_port
    from serving.router.config import RouterConfig
    from serving.router.service import build_router

    router = build_router(RouterConfig(), index_dir=index)
    router.warmup()

    async def plans():
        return [await router.plan([{"role": "user", "content": q}]) for q in QUESTIONS]

    planned = asyncio.run(plans())
    model_dir = ensure_base(Path.home() / ".cache" / "keel-test" / "checkpoints", None)
    cfg = EngineConfig(dtype="float32", max_model_len=2048, enforce_eager=True, kvcache_gib=1)
    log = Path(tempfile.mkdtemp()) / "engine.log"
    eng = EngineProcess(model_dir, "keel", find_free_port("127.0.0.1", 18300), cfg, log)
    t = time.perf_counter()
    eng.start()
    out: dict = {"engine_start_s": round(time.perf_counter() - t, 1), "questions": len(QUESTIONS)}
    out["routes"] = Counter(p.route for p in planned)
    out["sources"] = {
        q: [s["path"] for s in p.sources] for q, p in zip(QUESTIONS, planned, strict=True) if p.sources
    }
    samples: dict[str, dict] = {}
    try:
        with httpx.Client(base_url=eng.url, timeout=600) as c:

            def ask(p, extra):
                msgs = p.engine_messages or [{"role": "user", "content": "?"}]
                body = {
                    "model": "keel",
                    "messages": msgs,
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    **extra,
                }
                r = c.post("/v1/chat/completions", json=body)
                r.raise_for_status()
                ch = r.json()["choices"][0]
                return (
                    ch["message"]["content"] or "",
                    ch["finish_reason"],
                    r.json()["usage"]["completion_tokens"],
                )

            from concurrent.futures import ThreadPoolExecutor

            for name, extra in SETTINGS.items():
                t = time.perf_counter()
                with ThreadPoolExecutor(len(planned)) as ex:  # one batch per setting: vLLM batches them
                    res = list(ex.map(lambda p, e=extra: ask(p, e), planned))
                samples[name] = {
                    "at_max_tokens": sum(1 for _, f, _ in res if f == "length"),
                    "looping": sum(1 for text, _, _ in res if loops(text)),
                    "mean_tokens": round(statistics.mean(n for _, _, n in res), 1),
                    "seconds": round(time.perf_counter() - t, 1),
                    "first": {QUESTIONS[i]: res[i][0][:160] for i in (0, 6)},
                }
                print(json.dumps({name: samples[name]}, ensure_ascii=False), file=sys.stderr, flush=True)
    finally:
        eng.stop()
    out["settings"] = samples
    out["load"] = load()
    return out


def part_sources(index: Path) -> dict:
    """Which documents the domain route cites (no engine): the 12 questions above through router.plan,
    and every hard + fresh retrieval question through the retriever (top 5, as `keel eval rag` counts).
    Navigation is counted two independent ways: by file name (the demo corpus's TOC*.md, _index.md,
    _docHome.md: a check on the structural filter, never what it uses) and by that filter."""
    from serving.rag.evaluate import load_qa
    from serving.router.config import RouterConfig
    from serving.router.service import build_router

    repo = Path(__file__).resolve().parents[1]
    router = build_router(RouterConfig(), index_dir=index)
    router.warmup()
    ret = router.retriever

    async def plans():
        return [await router.plan([{"role": "user", "content": q}]) for q in QUESTIONS]

    planned = asyncio.run(plans())
    qa = [
        q.question
        for f in ("rag_qa_hard.jsonl", "rag_qa_hard_fresh.jsonl")
        for q in load_qa(repo / "tests" / "data" / f)
    ]
    hits = {q: ret.search(q, 5) for q in qa}
    by_name = lambda rel: Path(rel).name.startswith(("TOC", "_index", "_docHome"))  # noqa: E731
    cited = [s["path"] for p in planned for s in p.sources]
    top5 = [(h.relpath, h.id) for hs in hits.values() for h in hs]
    return {
        "chunks": len(ret),
        "navigation_chunks": len(ret.navigation),
        "routes": Counter(p.route for p in planned),
        "sources": {q: [s["path"] for s in p.sources] for q, p in zip(QUESTIONS, planned, strict=True)},
        "fixed_cited": len(cited),
        "fixed_cited_by_name_navigation": sorted(c for c in cited if by_name(c)),
        "qa_questions": len(qa),
        "qa_top5": len(top5),
        "qa_top5_by_name_navigation": sorted(r for r, _ in top5 if by_name(r)),
        "qa_top5_structural_navigation": sum(1 for _, i in top5 if i in ret.navigation),
        "load": load(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="latency")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--index", type=Path, default=Path("~/.cache/keel-bench/rag").expanduser())
    ap.add_argument("--max-tokens", type=int, default=200)
    args = ap.parse_args()
    out = {}
    parts = set(args.parts.split(","))
    if "latency" in parts:
        out["latency"] = part_latency(args.rounds)
    if "sources" in parts:
        out["sources"] = part_sources(args.index.expanduser())
    if "generation" in parts:
        out["generation"] = part_generation(args.index.expanduser(), args.max_tokens)
    print(json.dumps(out, ensure_ascii=False, indent=1, default=str))


if __name__ == "__main__":
    main()
