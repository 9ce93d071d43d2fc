"""Chunking, readers and the BM25 tokenizer: pure logic on real documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.rag.chunking import chunk_document
from serving.rag.documents import Document, InputError, discover, read
from serving.rag.lexical import LexicalIndex, tokenize


def test_tokenizer_handles_chinese_and_identifiers():
    toks = tokenize("如何设置 tidb_mem_quota_query 和 pd.schedule 的值")
    assert {"设置", "置", "tidb_mem_quota_query", "tidb", "quota", "pd.schedule", "schedule"} <= set(toks)
    assert "的" not in toks  # function word dropped as a unigram
    assert tokenize("How does the GC work?") == ["gc", "work"]


def test_markdown_chunks_follow_headings_and_limits(shared_data):
    path = shared_data / "domain/tidb-docs-zh/docs/garbage-collection-overview.md"
    f = discover([path])[0]
    chunks = chunk_document(next(read(f)), chunk_chars=300, overlap=50, file_hash=f.sha256)
    assert all(len(c.text) <= 300 for c in chunks)
    assert all(c.title == "GC 机制简介" for c in chunks)  # from the front matter
    assert any(c.heading.endswith("Resolve Locks（清理锁）") for c in chunks)
    assert [c.chunk_no for c in chunks] == list(range(len(chunks)))
    assert len({c.id for c in chunks}) == len(chunks)
    assert all(c.file_hash == f.sha256 and len(c.hash) == 16 for c in chunks)


def test_hash_in_code_block_is_not_a_heading():
    text = "# T\n\nintro\n\n```shell\n# just a comment\nls\n```\n\n## Real\n\nbody\n"
    chunks = chunk_document(Document("/x.md", "x.md", "markdown", text, "T"))
    assert [c.heading for c in chunks] == ["T", "T > Real"]
    assert "# just a comment" in chunks[0].text


def test_long_section_is_windowed_with_overlap():
    para = "".join(f"第{i}句话说明一个事实。" for i in range(200))
    chunks = chunk_document(Document("/x.md", "x.md", "markdown", f"# T\n\n{para}\n", "T"), 400, 80)
    assert len(chunks) > 3 and all(len(c.text) <= 400 for c in chunks)
    body = [c.text.split("\n", 1)[1] for c in chunks]
    assert body[0][-80:] == body[1][:80]


@pytest.mark.parametrize(
    "name,data,message",
    [
        ("empty.md", b"  \n", "empty file"),
        ("bin.txt", b"abc\x00\x01\x02", "binary file"),
        ("latin.txt", "café".encode("latin-1"), "not UTF-8"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": 3}\n', "bad.jsonl:2"),
        ("broken.jsonl", b'{"text": "ok"}\n{nope\n', "broken.jsonl:2"),
    ],
)
def test_bad_files_raise_one_line(tmp_path: Path, name, data, message):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(InputError, match=message) as e:
        [list(read(f)) for f in discover([p])]
    assert "\n" not in str(e.value)


def test_jsonl_lines_become_documents(tmp_path: Path):
    p = tmp_path / "notes.jsonl"
    p.write_text('{"text": "第一条"}\n\n{"text": "second", "title": "Two"}\n', encoding="utf-8")
    docs = [d for f in discover([p]) for d in read(f)]
    assert [(d.part, d.title) for d in docs] == [("L1", "notes line 1"), ("L3", "Two")]
    ids = [c.id for d in docs for c in chunk_document(d)]
    assert len(set(ids)) == 2 and "#L3::" in ids[1]


def test_bm25_finds_identifier():
    idx = LexicalIndex(["a", "b"], ["设置 tidb_gc_life_time 变量", "TiKV 存储 Region 的副本"])
    assert idx.search("what does gc life time do", 2)[0][0] == "a"
    assert idx.search("Region 副本", 2)[0][0] == "b"


def test_plural_stemming_meets_singular_terms():
    toks = tokenize("limit resources and indexes; status of the process")
    assert {"resource", "index", "status", "process"} <= set(toks) and "resources" not in toks
    idx = LexicalIndex(
        ["rc", "hw"], ["Resource Control：使用资源组限制租户", "hardware requirement 软硬件环境需求"]
    )
    assert idx.search("How can I limit the resources of one tenant?", 2)[0][0] == "rc"


def test_front_matter_summary_is_a_chunk_of_its_own(shared_data):
    f = discover([shared_data / "domain/tidb-docs-zh/docs/overview.md"])[0]
    doc = next(read(f))
    first = chunk_document(doc, summary_chunks=True)[0]
    assert first.heading == "summary" and first.chunk_no == 0
    assert first.text.startswith("TiDB 简介\n") and "开源分布式关系型数据库" in first.text
    assert not any(c.heading == "summary" for c in chunk_document(doc))  # off by default
    # a page without a summary gets none
    bare = Document("/x.md", "x.md", "markdown", "# T\n\nbody\n", "T")
    assert [c.heading for c in chunk_document(bare, summary_chunks=True)] == ["T"]
