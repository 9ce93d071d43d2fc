"""Hybrid retrieval: dense (Chroma, E5) and lexical (BM25) candidate lists fused by reciprocal rank.

RRF needs no score calibration between a cosine similarity and a BM25 score, and lets BM25 rescue the
cases dense retrieval misses (identifiers, English questions against Chinese text) and vice versa.
The retriever works on whatever is indexed so far: BM25 covers the whole catalog at once, dense
covers the chunks embedded so far. Standalone (the CLI, benchmarks) a catalog rewritten on disk is
picked up on the next query. In the platform the background indexer owns the rebuild
(`refresh_on_search = False`): it builds BM25 when the index loads and after each catalog write, in its
own thread, so no request ever pays for it; a query that arrives before the first build raises
`IndexLoading` (the router then answers directly, flagged, instead of citing nothing silently).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from serving.errors import ServingError
from serving.rag.chunking import Chunk
from serving.rag.config import RagConfig
from serving.rag.crosslingual import translate_terms
from serving.rag.embedder import Embedder, load_embedder
from serving.rag.lexical import _CJK, LexicalIndex
from serving.rag.navigation import navigation_ids
from serving.rag.store import IndexStoreError, catalog_path, load_catalog, open_index


class RetrievalError(ServingError, RuntimeError):
    """Retrieval could not run (no index, Chroma failure)."""


class IndexLoading(RetrievalError):
    """Nothing is searchable yet because the index is still being loaded or built (not because it is empty)."""


@dataclass
class Hit:
    id: str
    score: float  # fused score in hybrid mode, cosine similarity in dense mode, BM25 in lexical mode
    source: str
    relpath: str
    title: str
    heading: str
    chunk_no: int
    text: str
    dense: float | None = None  # cosine similarity, when the dense list had it
    lexical: float | None = None  # BM25 score, when the lexical list had it

    def brief(self) -> dict:
        """What goes into logs and API responses (no chunk text)."""
        d = asdict(self)
        d.pop("text")
        return d


def rrf(lists: list[list[str]], weights: list[float], k: int) -> list[tuple[str, float]]:
    scores: dict[str, float] = {}
    for ids, w in zip(lists, weights, strict=True):
        for rank, i in enumerate(ids, 1):
            scores[i] = scores.get(i, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def _by_document(
    chunk_score: dict[str, float], doc_score: dict[str, float], doc_of: dict[str, str]
) -> list[tuple[str, float]]:
    """The best chunk of every document in document order, then the other chunks in the same order;
    every chunk carries its document's score."""
    order = sorted(chunk_score, key=lambda i: (-doc_score[doc_of[i]], -chunk_score[i]))
    first: list[str] = []
    rest: list[str] = []
    seen: set[str] = set()
    for i in order:
        (rest if doc_of[i] in seen else first).append(i)
        seen.add(doc_of[i])
    return [(i, doc_score[doc_of[i]]) for i in first + rest]


def doc_rrf(
    lists: list[list[str]], weights: list[float], k: int, doc_of: dict[str, str]
) -> list[tuple[str, float]]:
    """Fuse at the document level, then list each document's chunks under it.

    A document is ranked in each list by its best chunk (its first appearance), so a document with
    five matching sections does not push five other documents down one list while being counted
    once. Output as `_by_document`.
    """
    doc_lists = [list(dict.fromkeys(doc_of[i] for i in ids)) for ids in lists]
    doc_score = dict(rrf(doc_lists, weights, k))
    chunk_score = dict(rrf(lists, weights, k))
    return _by_document(chunk_score, doc_score, doc_of)


def doc_sum(
    lists: list[list[str]], weights: list[float], k: int, doc_of: dict[str, str], top: int = 0
) -> list[tuple[str, float]]:
    """CombSUM at the document level: a document scores the sum of its best `top` chunks' RRF scores
    (0: all), so a document matched by several sections, in either list, rises; chunks listed as
    `_by_document`. `top` bounds how much a long document with many loosely matching sections gains."""
    chunk_score = dict(rrf(lists, weights, k))  # sorted best first
    doc_score: dict[str, float] = {}
    counted: dict[str, int] = {}
    for i, s in chunk_score.items():
        d = doc_of[i]
        if not top or counted.get(d, 0) < top:
            doc_score[d] = doc_score.get(d, 0.0) + s
            counted[d] = counted.get(d, 0) + 1
    return _by_document(chunk_score, doc_score, doc_of)


class Retriever:
    def __init__(self, index_dir: Path, config: RagConfig | None = None, embedder: Embedder | None = None):
        self.index_dir = Path(index_dir)
        self.config = config or RagConfig()
        self._embedder = embedder
        self._reload = threading.Lock()
        self._open = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._snapshot: tuple[dict[str, Chunk], LexicalIndex | None] = ({}, None)
        self._collection = None
        self._next_open = 0.0
        self._refs: dict[str, np.ndarray] = {}  # reference questions by script, for the hubness correction
        self._cjk_corpus: tuple[dict[str, Chunk], bool] | None = None  # (snapshot, mostly CJK?)
        self.navigation: set[str] = set()  # ids of the catalog's navigation chunks (never returned)
        # False when a background indexer calls refresh() itself (the platform): queries never rebuild
        self.refresh_on_search = True
        # whether that indexer has lexical work queued or running (the index is coming, not missing)
        self.index_busy: Callable[[], bool] | None = None
        self._building = False
        self._load_error: Exception | None = None  # the last catalog load's failure (a corrupt index)
        self._dense_n = 0  # vectors in the collection at the last dense search

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(
                self.config.embedder, self.config.embed_runtime, self.config.embed_device
            )
        return self._embedder

    def refresh(self, wait: bool = False) -> None:
        """Pick up a catalog the indexer replaced since the last look (BM25 rebuilt: seconds on a big corpus),
        and the dense collection once it exists.

        The rebuild runs outside the request path's way: while one thread rebuilds, others keep
        searching the previous catalog instead of waiting. The indexer that owns the rebuild passes
        `wait=True`: a load already running elsewhere (the start-up warm-up) may have read the catalog
        before this write, so skipping would leave the new one unloaded until the next write.
        """
        self._refresh(wait, reopen_now=True)

    def _refresh(self, wait: bool, reopen_now: bool) -> None:
        path = catalog_path(self.index_dir)
        try:
            st = path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        # never wait for another thread's rebuild (the platform's niced indexer can take many seconds
        # under load): search what is loaded, or fall back when nothing is loaded yet
        if stamp != self._stamp and self._reload.acquire(blocking=wait):
            self._building = True
            try:
                if stamp != self._stamp:
                    self._load_error = None
                    cfg = self.config
                    catalog = load_catalog(self.index_dir)
                    chunks = catalog.chunks if catalog else []
                    # navigation chunks (TOCs, index pages, link lists) never become candidates: they
                    # match every query's terms and hold no answer
                    nav = navigation_ids(chunks) if cfg.skip_navigation else set()
                    content = [c for c in chunks if c.id not in nav]
                    lexical = LexicalIndex(
                        [c.id for c in content], [c.text for c in content], cfg.bm25_k1, cfg.bm25_b
                    )
                    self.navigation = nav
                    # one assignment, so a concurrent search sees the old pair or the new pair
                    self._snapshot = ({c.id: c for c in content}, lexical)
                    self._stamp = stamp
            except Exception as e:
                self._load_error = e  # a search without a loaded catalog reports it (not "loading")
                raise
            finally:
                self._building = False
                self._reload.release()
        self._open_dense(stamp is not None, reopen_now)

    def _open_dense(self, catalog_exists: bool = True, now: bool = False) -> None:
        # the back-off spares queries a store lookup each; an explicit refresh (the indexer after a
        # dense pass, or a caller) looks at once, or vectors written within 5 s stay unseen
        if self._collection is None and catalog_exists and (now or time.monotonic() >= self._next_open):
            with self._open:  # not `_reload`: a BM25 rebuild in another thread must not hold this up
                if self._collection is None:
                    self._collection = open_index(self.index_dir, self.config, create=False)
                    # no vectors yet (lexical-only index): look again in a few seconds, not per query
                    self._next_open = time.monotonic() + 5.0

    @property
    def _chunks(self) -> dict[str, Chunk]:
        return self._snapshot[0]

    def _fresh(self) -> None:
        """What a query does first: rebuild a changed catalog itself, unless an indexer owns that."""
        if self.refresh_on_search:
            self._refresh(False, reopen_now=False)
        else:
            self._open_dense(self._stamp is not None)

    def loading(self) -> bool:
        """The index is on its way: a build is running, the indexer has lexical work, or a catalog on disk
        was never loaded."""
        if self._building or (self.index_busy is not None and self.index_busy()):
            return True
        return self._stamp is None and catalog_path(self.index_dir).exists()

    def __len__(self) -> int:
        self._fresh()
        return len(self._chunks)

    def lexical_only(self) -> bool:
        """Retrieval is BM25 alone for now: lexical mode, or fewer vectors than catalog chunks at the last
        dense search (the background indexer is still embedding, or dense indexing is off). No I/O: the
        router asks on its event loop after each search."""
        if self.config.mode == "lexical" or self._collection is None:
            return True
        chunks = self._chunks
        return not chunks or self._dense_n < len(chunks) + len(self.navigation)

    def dense_count(self) -> int:
        self._fresh()
        return self._collection.count() if self._collection is not None else 0

    def set_reference(self, texts: list[str], vectors: np.ndarray | None = None) -> None:
        """Example user questions (the router's domain examples) for the hubness correction: an
        embedding per text, `vectors` when the caller has them already (rows L2-normalised)."""
        if not texts:
            self._refs = {}
            return
        vecs = self.embedder.embed_queries(list(texts)) if vectors is None else np.asarray(vectors)
        cjk = np.array([bool(_CJK.search(t)) for t in texts])
        self._refs = {"cjk": vecs[cjk], "other": vecs[~cjk]}

    def _corpus_is_cjk(self, chunks: dict[str, Chunk]) -> bool:
        if self._cjk_corpus is None or self._cjk_corpus[0] is not chunks:
            sample = list(chunks.values())[:: max(1, len(chunks) // 200)]
            self._cjk_corpus = (chunks, sum(1 for c in sample if _CJK.search(c.text)) > len(sample) / 2)
        return self._cjk_corpus[1]

    def lexical_query(self, query: str, chunks: dict[str, Chunk]) -> str:
        """The BM25 query: an English query against a Chinese corpus also carries the Chinese terms for
        its database terms (the docs write the concepts in Chinese, the identifiers in English)."""
        if not self.config.translate_query or _CJK.search(query) or not self._corpus_is_cjk(chunks):
            return query
        extra = translate_terms(query)
        return f"{query} {extra}" if extra else query

    def _hub_reference(self, query: str, chunks: dict[str, Chunk]) -> np.ndarray | None:
        """The reference questions in the query's script, when that differs from the corpus's."""
        if not self.config.hub_correction or not self._refs:
            return None
        q_cjk = bool(_CJK.search(query))
        if q_cjk == self._corpus_is_cjk(chunks):
            return None
        ref = self._refs["cjk" if q_cjk else "other"]
        return ref if len(ref) else None

    def dense_search(
        self, query: str, k: int, chunks: dict[str, Chunk] | None = None
    ) -> list[tuple[str, float]]:
        """Nearest chunks by cosine similarity, best first.

        Across scripts (an English question, a Chinese corpus) multilingual-e5-small has *hubs*:
        chunks full of English (field lists, command output) that sit near every English question
        whatever it asks. As in CSLS (Conneau et al. 2018, cross-lingual word retrieval), each candidate
        is ranked by its similarity minus `hub_correction` × its mean similarity to its
        `hub_neighbours` nearest reference questions in the query's language, i.e. by how much closer
        it is to this question than to typical questions. The returned score stays the plain cosine.
        """
        chunks = self._chunks if chunks is None else chunks
        col = self._collection
        if col is None:
            return []
        n = col.count()
        self._dense_n = n
        if n == 0:
            return []
        emb = self.embedder.embed_queries([query])
        ref = self._hub_reference(query, chunks)
        if ref is None:
            res = col.query(query_embeddings=emb, n_results=min(k, n), include=["distances"])
            # cosine space: distance = 1 - similarity; ids no longer in the catalog are vectors of deleted files
            return [
                (i, 1.0 - d) for i, d in zip(res["ids"][0], res["distances"][0], strict=True) if i in chunks
            ]
        # re-rank a deeper candidate list: the corrected order can lift chunks from below k
        res = col.query(query_embeddings=emb, n_results=min(2 * k, n), include=["distances", "embeddings"])
        vecs = np.asarray(res["embeddings"][0], dtype=np.float32)
        nn = min(self.config.hub_neighbours, len(ref))
        hubness = np.sort(vecs @ ref.T, axis=1)[:, -nn:].mean(axis=1)
        sims = 1.0 - np.asarray(res["distances"][0], dtype=np.float32)
        order = np.argsort(-(sims - self.config.hub_correction * hubness), kind="stable")
        ids = res["ids"][0]
        return [(ids[j], float(sims[j])) for j in order if ids[j] in chunks][:k]

    def search(self, query: str, k: int | None = None, mode: str | None = None) -> list[Hit]:
        cfg = self.config
        k = k or cfg.top_k
        mode = mode or cfg.mode
        try:
            self._fresh()
            chunks, lex = self._snapshot
            if not chunks and self._load_error is not None:
                raise self._load_error
            if not chunks and self.loading():
                raise IndexLoading("the document index is still loading (lexical pass running)")
            if not chunks:
                raise RetrievalError(f"the index at {self.index_dir} is empty; run `keel index PATH`")
            dense = self.dense_search(query, cfg.candidates, chunks) if mode in ("hybrid", "dense") else []
            lexical = (
                lex.search(self.lexical_query(query, chunks), cfg.candidates)
                if mode in ("hybrid", "lexical") and lex
                else []
            )
        except (IndexStoreError, RetrievalError):
            raise
        except Exception as e:  # a Chroma failure mid-request is a retrieval failure, not a crash
            raise RetrievalError(f"retrieval failed: {type(e).__name__}: {e}") from e
        dmap, lmap = dict(dense), dict(lexical)
        if mode == "dense":
            ranked = dense
        elif mode == "lexical":
            ranked = lexical
        elif cfg.fusion in ("document", "doc-sum"):
            lists = [[i for i, _ in dense], [i for i, _ in lexical]]
            weights = [cfg.dense_weight, cfg.lexical_weight]
            doc_of = {i: chunks[i].source for i, _ in dense + lexical}
            if cfg.fusion == "document":
                ranked = doc_rrf(lists, weights, cfg.rrf_k, doc_of)
            else:
                ranked = doc_sum(lists, weights, cfg.doc_sum_rrf_k, doc_of, cfg.doc_sum_top)
        else:
            ranked = rrf(
                [[i for i, _ in dense], [i for i, _ in lexical]],
                [cfg.dense_weight, cfg.lexical_weight],
                cfg.rrf_k,
            )
        hits = []
        for cid, score in ranked[:k]:
            c = chunks[cid]
            hits.append(
                Hit(
                    cid,
                    round(score, 6),
                    c.source,
                    c.relpath,
                    c.title,
                    c.heading,
                    c.chunk_no,
                    c.text,
                    dmap.get(cid),
                    lmap.get(cid),
                )
            )
        return hits

    def timed_search(self, query: str, k: int | None = None) -> tuple[list[Hit], float]:
        t = time.perf_counter()
        hits = self.search(query, k)
        return hits, (time.perf_counter() - t) * 1000
