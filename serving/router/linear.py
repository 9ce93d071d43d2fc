"""The default intent classifier: multinomial logistic regression on [E5 embedding, product-name counts].

Why linear on top of the embedding rather than nearest examples: out_of_scope is a patchwork (other
databases, ops tooling, cooking), and its examples sit next to TiDB questions in embedding space
("MySQL 主从复制延迟" vs "TiCDC 同步延迟"); a fitted hyperplane weighs the few directions that separate
them, and the product-name counts (lexicon.py) say whose product a message is about. The model is
small (387 × 3 numbers), committed as JSON (data/router_model.json) and fitted by `keel router train`
(fit.py) from shipped data; loading it costs nothing at start and classifying costs one E5 query
embedding (shared with retrieval) plus a 387 × 3 product.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from keelcommon.files import write_text_atomic
from serving.rag.embedder import Embedder
from serving.router.classifier import Classification
from serving.router.intents import ROUTES
from serving.router.lexicon import LexiconFeatures, load_lexicon
from serving.router.workers import RoutingPool

DEFAULT_MODEL = Path(__file__).parent / "data" / "router_model.json"


class RouterModelError(ValueError):
    """The router model file is missing, malformed or made for another embedder (one line)."""


class LinearModel(BaseModel):
    """A fitted router model: what it was fitted on, with which settings, and how it scored."""

    version: int = 1
    embedder: str
    labels: list[str]
    dim: int  # embedding dimensions; the lexicon counts follow them
    scale: float  # features are multiplied by this before the product (fit and predict alike)
    weights: list[list[float]]  # (dim + 2) × len(labels)
    bias: list[float]
    trained_on: dict = Field(default_factory=dict)  # counts per source, sha256 of the training rows
    settings: dict = Field(default_factory=dict)  # l2, iterations, learning rate
    test: dict = Field(default_factory=dict)  # scores on the test half when it was fitted

    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the old model or the new one, never half a file."""
        write_text_atomic(Path(path), self.model_dump_json(indent=1) + "\n")


def load_model(path: Path | None = None) -> LinearModel:
    p = Path(path) if path else DEFAULT_MODEL
    try:
        model = LinearModel.model_validate(json.loads(p.read_text(encoding="utf-8")))
    except FileNotFoundError as e:
        raise RouterModelError(f"router model not found: {p} (fit one with `keel router train`)") from e
    except (json.JSONDecodeError, ValueError) as e:
        raise RouterModelError(f"router model {p} is not valid: {str(e).splitlines()[0]}") from e
    if sorted(model.labels) != sorted(ROUTES):
        raise RouterModelError(f"router model {p} has labels {model.labels}, need {list(ROUTES)}")
    if np.asarray(model.weights).shape != (model.dim + 2, len(model.labels)):
        raise RouterModelError(f"router model {p}: weights are not ({model.dim + 2}, {len(model.labels)})")
    return model


def features(vectors: np.ndarray, texts: list[str], lexicon: LexiconFeatures) -> np.ndarray:
    lex = np.array([lexicon.features(t) for t in texts], dtype=np.float32).reshape(len(texts), 2)
    return np.hstack([np.asarray(vectors, dtype=np.float32), lex])


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class LinearClassifier:
    def __init__(
        self,
        model: LinearModel,
        embedder: Embedder,
        lexicon: LexiconFeatures | None = None,
        pool: RoutingPool | None = None,
    ):
        if model.embedder != embedder.name or model.dim != embedder.dim:
            raise RouterModelError(
                f"router model was fitted on embedder {model.embedder!r} ({model.dim} dims), the router "
                f"uses {embedder.name!r} ({embedder.dim}); refit with `keel router train`"
            )
        self.model = model
        self.pool = pool
        self.labels = list(model.labels)
        self._w = np.asarray(model.weights, dtype=np.float32)
        self._b = np.asarray(model.bias, dtype=np.float32)
        self._embedder = embedder
        self._lexicon = lexicon or load_lexicon()

    def probabilities(self, texts: list[str], vectors: np.ndarray | None = None) -> np.ndarray:
        if vectors is None:
            vectors = self._embedder.embed_queries(texts)
        f = features(vectors, texts, self._lexicon) * self.model.scale
        return softmax(f @ self._w + self._b)

    def classify_sync(self, text: str) -> Classification:
        p = self.probabilities([text])[0]
        scores = {n: round(float(v), 4) for n, v in zip(self.labels, p, strict=True)}
        best = self.labels[int(np.argmax(p))]
        return Classification(best, scores[best], scores, method="linear")

    async def classify(self, text: str) -> Classification:
        # the embedding is native code that releases the GIL: keep it off the event loop, on the
        # router's lane for the message's length (workers.py)
        if self.pool is not None:
            return await self.pool.run(self.classify_sync, text, size=len(text))
        return await asyncio.to_thread(self.classify_sync, text)
