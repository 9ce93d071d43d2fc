"""Retrieval and routing benchmark: recall/MRR (dense, lexical, hybrid), router accuracy, added latency,
index build rate and re-index time. Results go into docs/BENCHMARKS.md ("RAG and routing").

    OMP_NUM_THREADS=2 python -P bench/rag.py --distractors 20 --index ~/.cache/keel-bench/rag

(-P: bench/serving.py would otherwise shadow the serving package.)

Indexes a subset of the demo corpus: every doc our QA sets reference plus N distractor docs (a fixed
random sample), because the whole corpus takes ~35 min of both cores. The index is incremental, so a
second run only evaluates. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from serving.rag.config import RagConfig
from serving.rag.evaluate import evaluate, load_qa
from serving.rag.indexer import Indexer
from serving.rag.retriever import Retriever
from serving.router.config import RouterConfig
from serving.router.evaluate import evaluate_router, load_labelled
from serving.router.service import build_router

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "domain" / "tidb-docs-zh"
HARD = REPO / "tests" / "data" / "rag_qa_hard.jsonl"
ROUTER = REPO / "tests" / "data" / "router_eval.jsonl"


def reindex_one_file(sub: Path, docs: Path, index: Path, rel: str, cfg: RagConfig) -> dict:
    """Edit one heading of one doc and re-index, on private copies (the cached index stays clean)."""
    with tempfile.TemporaryDirectory() as tmp:
        tdocs, tidx = Path(tmp) / "docs", Path(tmp) / "idx"
        shutil.copytree(sub, tdocs, symlinks=False)
        shutil.copytree(index, tidx)
        # re-point the copy at the copied files (sources are resolved paths, i.e. under `docs`)
        s = Indexer(tidx, cfg).update([tdocs], progress=False, remove=[docs])
        assert s.chunks_reused == s.chunks_total == s.chunks_embedded, s.line()
        f = tdocs / rel
        f.write_text(f.read_text(encoding="utf-8").replace("\n## ", "\n## 修订 ", 1), encoding="utf-8")
        t = time.perf_counter()
        s = Indexer(tidx, cfg).update([tdocs], progress=False)
        return {"seconds": time.perf_counter() - t, "line": s.line()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--distractors", type=int, default=40)
    ap.add_argument("--index", type=Path, default=Path("~/.cache/keel-bench/rag").expanduser())
    ap.add_argument(
        "--parts", default="retrieval,router,latency,reindex", help="Comma list of what to measure."
    )
    ap.add_argument("--faq-limit", type=int, default=0, help="Use only the first N FAQ questions (0: all).")
    args = ap.parse_args()

    hard = load_qa(HARD)
    faq = load_qa(CORPUS / "faq_qa.jsonl")
    if args.faq_limit:
        faq = faq[: args.faq_limit]
    docs = CORPUS / "docs"
    wanted = sorted({q.source for q in hard + faq})
    rest = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.md"))
    rest = [p for p in rest if p not in wanted]
    subset = wanted + random.Random(0).sample(rest, args.distractors)

    # the subset as a folder of symlinks keeps relative paths (what QA sources name)
    sub = args.index.parent / (args.index.name + "-docs")
    for rel in subset:
        link = sub / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(docs / rel)
    cfg = RagConfig()
    t = time.perf_counter()
    s = Indexer(args.index, cfg).update([sub], progress=True)
    print("index:", s.line())

    # lexical build rate: catalog → BM25
    r = Retriever(args.index, cfg)
    t = time.perf_counter()
    r.refresh()
    lex_s = time.perf_counter() - t
    n_chunks = len(r)

    out = {"docs": len(subset), "chunks": n_chunks, "lexical_build_s": lex_s, "index": s.__dict__}
    parts = set(args.parts.split(","))
    out["retrieval"] = {}
    for name, items in [
        ("hard", hard),
        ("hard-en", [q for q in hard if q.lang == "en"]),
        ("hard-zh", [q for q in hard if q.lang == "zh"]),
        ("faq", faq),
    ]:
        for mode in ("dense", "lexical", "hybrid") if "retrieval" in parts else ():
            out["retrieval"][f"{name}/{mode}"] = evaluate(r, items, mode=mode).row()

    router = build_router(RouterConfig(), cfg, args.index)
    if "router" in parts:
        rep = evaluate_router(router.classifier, load_labelled(ROUTER))
        out["router"] = {"accuracy": rep.accuracy, "per_intent": rep.per_intent, "confusion": rep.confusion}

    if "latency" in parts:
        # added latency per domain request, as the gateway sees it: router.plan = classify → retrieve →
        # prompt (no generation); the query-embedding cache is cleared so every question pays in full
        router.warmup()
        lat = []
        for q in [q.question for q in hard]:
            router.retriever.embedder.clear_cache()
            t = time.perf_counter()
            plan = asyncio.run(router.plan([{"role": "user", "content": q}]))
            lat.append((time.perf_counter() - t) * 1000)
            assert plan.route
        lat.sort()
        out["latency_ms"] = {
            "p50": statistics.median(lat),
            "p95": lat[int(0.95 * len(lat)) - 1],
            "n": len(lat),
        }

    if "reindex" in parts:
        out["reindex_one_file"] = reindex_one_file(sub, docs, args.index, wanted[0], cfg)
    print(json.dumps(out, ensure_ascii=False, indent=1, default=str))


if __name__ == "__main__":
    main()
