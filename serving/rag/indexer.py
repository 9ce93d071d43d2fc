"""Build or update the index from files: incremental, resumable, and all-or-nothing on bad input.

Order of work, and why:
1. open Chroma and the catalog (a corrupt folder fails here, before anything is written);
2. read, hash and chunk every file (a bad file fails here, before anything is written);
3. write the new catalog atomically (BM25 now covers the new corpus);
4. make Chroma match the catalog: delete vectors of removed chunks, update moved chunks' metadata,
   embed the missing ones in batches. Chunk ids are content hashes, so an edit re-embeds only the
   chunks it touched, and an interrupted run simply finds fewer missing chunks next time.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from serving.rag.chunking import Chunk, chunk_document, chunking_fingerprint
from serving.rag.config import RagConfig
from serving.rag.documents import InputError, discover, read
from serving.rag.store import Catalog, IndexStoreError, load_catalog, open_index, save_catalog


@dataclass
class IndexSummary:
    files: int = 0
    files_new: int = 0
    files_changed: int = 0
    files_removed: int = 0
    chunks_added: int = 0
    chunks_updated: int = 0
    chunks_removed: int = 0
    chunks_reused: int = 0  # added with a stored vector of identical text
    chunks_total: int = 0
    chunks_embedded: int = 0  # vectors in Chroma after the run
    chunks_missing: int = 0  # chunks without a vector when embedding started
    interrupted: bool = False  # embedding stopped early (shutdown, newer work); the next run resumes
    lexical_only: bool = False  # the catalog was written, Chroma not touched
    embed_seconds: float = 0.0
    seconds: float = 0.0
    # files left out of this run, "path: why" (unreadable, binary, not UTF-8, empty, a bad JSONL line);
    # one that was indexed before keeps its previous chunks
    skipped: list[str] = field(default_factory=list)

    def line(self) -> str:
        unchanged = self.files - self.files_new - self.files_changed
        embedded = (
            f"{self.chunks_total} chunks searchable (lexical)"
            if self.lexical_only
            else f"{self.chunks_embedded}/{self.chunks_total} embedded"
        )
        rate = (
            f", {(self.chunks_added - self.chunks_reused) / self.embed_seconds:.2f} chunks/s embedded"
            if self.embed_seconds > 0
            else ""
        )
        skipped = f"; skipped {len(self.skipped)} file(s): " + "; ".join(self.skipped) if self.skipped else ""
        return (
            f"{self.files} files ({self.files_new} new, {self.files_changed} changed, {unchanged} unchanged, "
            f"{self.files_removed} removed); chunks {self.chunks_added} added, {self.chunks_updated} updated, "
            f"{self.chunks_removed} removed, {self.chunks_reused} reused; {embedded}; "
            f"{self.seconds:.1f} s{rate}{skipped}"
        )


def _under(source: str, roots: list[Path]) -> bool:
    for r in roots:
        rs = str(r)
        if source == rs or source.startswith(rs.rstrip(os.sep) + os.sep):
            return True
    return False


@dataclass(frozen=True)
class Pacing:
    """How a dense pass shares the machine: batch size, a pause between batches, a stop test and a
    progress callback (background indexing yields to serving with these)."""

    batch: int | None = None
    pause_s: float = 0.0
    should_stop: Callable[[], bool] | None = None
    on_progress: Callable[[int, int], None] | None = None


class Indexer:
    def __init__(self, index_dir: Path, config: RagConfig | None = None):
        self.index_dir = Path(index_dir)
        self.config = config or RagConfig()

    def rebuild(self, roots: Iterable[Path], **kw) -> IndexSummary:
        """Index from scratch into a fresh folder and swap it in only when it is complete."""
        tmp = self.index_dir.with_name(self.index_dir.name + ".rebuild")
        shutil.rmtree(tmp, ignore_errors=True)
        summary = Indexer(tmp, self.config).update(roots, **kw)
        # Not keelcommon's atomic_folder, which refuses an existing destination: a rebuild replaces one,
        # so the old index is moved aside, the new one renamed in, and the old one removed.
        old = self.index_dir.with_name(self.index_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.index_dir.exists():
            self.index_dir.rename(old)
        tmp.rename(self.index_dir)
        shutil.rmtree(old, ignore_errors=True)
        return summary

    def _this_embedders(self, catalog: Catalog | None) -> Catalog | None:
        """The catalog (None: no index yet), refused if another embedder built it: its vectors and the
        configured embedder's queries would not compare."""
        if catalog is not None and catalog.embedder != self.config.embedder:
            raise IndexStoreError(
                f"index at {self.index_dir} was built with embedder {catalog.embedder!r}, config says "
                f"{self.config.embedder!r}; rebuild with --rebuild"
            )
        return catalog

    def update(
        self, roots: Iterable[Path], dense: bool = True, progress: bool = True, remove: Iterable[Path] = ()
    ) -> IndexSummary:
        """Make the index hold the files under `roots`; files indexed from other roots stay, except under `remove`."""
        t0 = time.perf_counter()
        cfg = self.config
        roots = [Path(r).expanduser().resolve() for r in roots]
        forget = [Path(r).expanduser().resolve() for r in remove]
        s = IndexSummary()

        # 1. the existing index must be usable before we touch it
        old = self._this_embedders(load_catalog(self.index_dir))
        collection = open_index(self.index_dir, cfg, create=True) if dense else None
        old = old or Catalog(embedder=cfg.embedder)

        # 2. read and chunk (a missing path or unsupported file named directly: InputError before any
        # write; an unreadable or undecodable file is skipped, reported, and the run goes on)
        unreadable: list[tuple[Path, str]] = []
        files = discover(roots, unreadable) if roots else []
        by_source: dict[str, list[Chunk]] = {}
        for c in old.chunks:
            by_source.setdefault(c.source, []).append(c)
        chunking = chunking_fingerprint(cfg.chunk_chars, cfg.chunk_overlap, cfg.summary_chunks)
        new = Catalog(embedder=cfg.embedder, chunking=chunking)
        # cut with other settings (or an older chunker): every file is chunked again, unchanged or not
        rechunk = old.chunking != chunking and bool(old.chunks)
        seen: set[str] = set()

        def skip(src: str, why: str) -> None:
            s.skipped.append(why)
            seen.add(src)
            if src in old.files:  # keep what was indexed from it before; the next run tries again
                new.files[src] = old.files[src]
                new.chunks.extend(by_source.get(src, []))

        for path, why in unreadable:
            skip(str(path), why)
        for f in files:
            src = str(f.path)
            seen.add(src)
            prev = old.files.get(src)
            unchanged = prev is not None and prev["sha256"] == f.sha256
            if unchanged and src in by_source and not rechunk:
                chunks = by_source[src]
            else:
                try:
                    chunks = [
                        c
                        for d in read(f)
                        for c in chunk_document(
                            d, cfg.chunk_chars, cfg.chunk_overlap, f.sha256, cfg.summary_chunks
                        )
                    ]
                except InputError as e:
                    skip(src, str(e))
                    continue
                s.files_new += prev is None
                s.files_changed += prev is not None and not unchanged
            new.files[src] = {"sha256": f.sha256, "relpath": f.relpath}
            new.chunks.extend(chunks)
        s.files = len(new.files)
        for src, info in old.files.items():
            if src in seen:
                continue
            if _under(src, roots) or _under(src, forget):
                s.files_removed += 1
            else:  # indexed from another root earlier: keep
                new.files[src] = info
                new.chunks.extend(by_source.get(src, []))
                if rechunk:  # kept as cut before: the next update that reads its root re-chunks it
                    new.chunking = old.chunking

        # 3. the catalog first: lexical search is complete from here on
        old_ids = {c.id for c in old.chunks}
        new_ids = {c.id for c in new.chunks}
        save_catalog(self.index_dir, new)
        s.chunks_total = len(new.chunks)
        if collection is None:
            s.lexical_only = True
            s.chunks_added = len(new_ids - old_ids)
            s.chunks_removed = len(old_ids - new_ids)
            s.seconds = time.perf_counter() - t0
            return s

        # 4. bring Chroma in line with the catalog
        self._sync(collection, new, s, progress=progress)
        s.seconds = time.perf_counter() - t0
        return s

    def embed_missing(
        self,
        progress: bool = False,
        batch: int | None = None,
        pause_s: float = 0.0,
        should_stop: Callable[[], bool] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> IndexSummary:
        """Make Chroma match the current catalog (the dense half of `update`), resumable at any batch.

        Background indexing calls this with small batches, a pause between them and a stop test, so
        it yields the CPU to serving and hands the catalog back to a newer lexical update quickly.
        """
        t0 = time.perf_counter()
        s = IndexSummary()
        catalog = self._this_embedders(load_catalog(self.index_dir))
        if catalog is None:
            return s
        collection = open_index(self.index_dir, self.config, create=True)
        s.files = len(catalog.files)
        s.chunks_total = len(catalog.chunks)
        self._sync(collection, catalog, s, progress, Pacing(batch, pause_s, should_stop, on_progress))
        s.seconds = time.perf_counter() - t0
        return s

    def _sync(
        self,
        collection,
        catalog: Catalog,
        s: IndexSummary,
        progress: bool = True,
        pacing: Pacing | None = None,
    ) -> None:
        """Delete vectors of removed chunks, update moved chunks' metadata, reuse or embed missing ones."""
        pace = pacing or Pacing()
        try:
            have = collection.get(include=["metadatas"])
        except Exception as e:
            raise IndexStoreError(f"Chroma index at {self.index_dir / 'chroma'} cannot be read: {e}") from e
        new_ids = {c.id for c in catalog.chunks}
        have_meta = dict(zip(have["ids"], have["metadatas"], strict=True))
        missing = [c for c in catalog.chunks if c.id not in have_meta]
        # a chunk whose text is already embedded under another id (file moved or renamed, duplicate
        # content) takes the stored vector instead of being embedded again
        by_hash = {m.get("hash"): i for i, m in have_meta.items() if m}
        reuse = [c for c in missing if c.hash in by_hash]
        for i in range(0, len(reuse), 500):
            part = reuse[i : i + 500]
            got = collection.get(ids=list({by_hash[c.hash] for c in part}), include=["embeddings"])
            vec = dict(zip(got["ids"], got["embeddings"], strict=True))
            collection.add(
                ids=[c.id for c in part],
                embeddings=[vec[by_hash[c.hash]] for c in part],
                documents=[c.text for c in part],
                metadatas=[c.metadata() for c in part],
            )
        s.chunks_reused = len(reuse)
        stale = [i for i in have_meta if i not in new_ids]
        for i in range(0, len(stale), 1000):
            collection.delete(ids=stale[i : i + 1000])
        s.chunks_removed = len(stale)
        moved = [c for c in catalog.chunks if c.id in have_meta and have_meta[c.id] != c.metadata()]
        for i in range(0, len(moved), 1000):
            part = moved[i : i + 1000]
            collection.update(ids=[c.id for c in part], metadatas=[c.metadata() for c in part])
        s.chunks_updated = len(moved)
        reused = {c.id for c in reuse}
        missing = [c for c in missing if c.id not in reused]
        s.chunks_missing = len(missing)
        step = pace.batch or self.config.embed_batch
        te = time.perf_counter()
        bar = tqdm(total=len(missing), unit="chunk", desc="embedding", disable=not progress or not missing)
        done = 0
        for i in range(0, len(missing), step):
            if pace.should_stop is not None and pace.should_stop():
                s.interrupted = True
                break
            part = missing[i : i + step]
            # documents go through the collection's embedding function (passage prefix)
            collection.add(
                ids=[c.id for c in part],
                documents=[c.text for c in part],
                metadatas=[c.metadata() for c in part],
            )
            done += len(part)
            bar.update(len(part))
            if pace.on_progress is not None:
                pace.on_progress(done, len(missing))
            if pace.pause_s > 0 and done < len(missing):
                time.sleep(pace.pause_s)
        bar.close()
        s.embed_seconds = time.perf_counter() - te if done else 0.0
        s.chunks_added += done + s.chunks_reused
        s.chunks_embedded = collection.count()
