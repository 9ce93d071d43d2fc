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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--distractors", type=int, default=40)
    ap.add_argument("--index", type=Path, default=Path("~/.cache/keel-bench/rag").expanduser())
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
    out["retrieval"] = {}
    for name, items in [
        ("hard", hard),
        ("hard-en", [q for q in hard if q.lang == "en"]),
        ("hard-zh", [q for q in hard if q.lang == "zh"]),
        ("faq", faq),
    ]:
        for mode in ("dense", "lexical", "hybrid"):
            out["retrieval"][f"{name}/{mode}"] = evaluate(r, items, mode=mode).row()

    router = build_router(RouterConfig(), cfg, args.index)
    rep = evaluate_router(
        router.classifier.fallback if hasattr(router.classifier, "fallback") else router.classifier,
        load_labelled(ROUTER),
    )
    out["router"] = {"accuracy": rep.accuracy, "per_intent": rep.per_intent, "confusion": rep.confusion}

    # added latency per domain request: classify + retrieve (no generation)
    lat = []
    questions = [q.question for q in hard]
    for q in questions * 2:
        t = time.perf_counter()
        c = router.classifier.classify_sync(q)
        r.search(q, k=RouterConfig().context_chunks)
        lat.append((time.perf_counter() - t) * 1000)
        assert c.intent
    lat.sort()
    out["latency_ms"] = {"p50": statistics.median(lat), "p95": lat[int(0.95 * len(lat)) - 1], "n": len(lat)}

    # re-index after editing one file (on a private copy of index + docs: the cache stays clean)
    with tempfile.TemporaryDirectory() as tmp:
        tdocs, tidx = Path(tmp) / "docs", Path(tmp) / "idx"
        shutil.copytree(sub, tdocs, symlinks=False)
        shutil.copytree(args.index, tidx)
        Indexer(tidx, cfg).update([tdocs], progress=False, remove=[sub])  # re-point (vectors reused)
        f = tdocs / wanted[0]
        f.write_text(f.read_text(encoding="utf-8").replace("\n## ", "\n## 修订 ", 1), encoding="utf-8")
        t = time.perf_counter()
        s2 = Indexer(tidx, cfg).update([tdocs], progress=False)
        out["reindex_one_file"] = {"seconds": time.perf_counter() - t, "line": s2.line()}
    print(json.dumps(out, ensure_ascii=False, indent=1, default=str))


if __name__ == "__main__":
    main()
