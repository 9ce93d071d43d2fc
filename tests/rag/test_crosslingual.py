"""English questions against Chinese docs: BM25 also searches the Chinese terms for the question's
database terms (rag.translate_query), and only when the scripts differ."""

from __future__ import annotations

from serving.rag.config import RagConfig
from serving.rag.crosslingual import translate_terms
from serving.rag.indexer import Indexer
from serving.rag.retriever import Retriever


def test_terms_are_translated_longest_first_and_once():
    assert translate_terms("How do I back up a TiDB cluster?") == "备份 集群"
    # "plan cache" is one term, not "plan" + "cache"; plurals and case are the same term
    assert translate_terms("Does the Plan Cache work with Backups and backup?") == "执行计划缓存 备份"
    assert translate_terms("tidb_mem_quota_query") == ""  # identifiers stay as they are


def test_an_english_question_finds_the_chinese_page(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "br.md").write_text(
        "# 备份与恢复\n\n使用 BR 工具备份集群数据，并在需要时恢复到新的集群。\n", encoding="utf-8"
    )
    (docs / "gc.md").write_text(
        "# 垃圾回收\n\nGC 定期清理旧版本数据，由 tidb_gc_life_time 控制保留时间。\n", encoding="utf-8"
    )
    (docs / "tool.md").write_text(
        "# TiDB tool\n\nA TiDB tool for a TiDB cluster in English.\n", encoding="utf-8"
    )
    index = tmp_path / "index"
    Indexer(index, RagConfig()).update([docs], dense=False, progress=False)
    on = Retriever(index, RagConfig())
    off = Retriever(index, RagConfig(translate_query=False))
    q = "How do I back up and restore data?"
    assert on.search(q, 1, mode="lexical")[0].relpath == "br.md"
    assert "br.md" not in [h.relpath for h in off.search(q, 3, mode="lexical")]  # the test can fail
    # a Chinese question is searched as it is
    assert on.lexical_query("怎么备份", on._chunks) == "怎么备份"
    assert on.lexical_query(q, on._chunks) == q + " 备份 恢复"
