"""Intent classifiers. The default is embedding-based: no engine call, ~ms, deterministic.

Each intent's score is the mean cosine similarity of the message to its `neighbours` nearest
examples (k-NN per class: more robust than a centroid when an intent, like out_of_scope, is a
patchwork of unrelated topics). The best intent wins; if even its score is under the threshold the
message resembles nothing we know and is out_of_scope.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from serving.rag.embedder import Embedder
from serving.router.intents import ROUTES, Intents
from serving.router.workers import RoutingPool

Generate = Callable[
    [list[dict[str, Any]], dict[str, Any]], AsyncIterator[str] | Awaitable[AsyncIterator[str]]
]


@dataclass
class Classification:
    intent: str
    confidence: float  # the winning intent's score (mean similarity of its nearest examples)
    scores: dict[str, float] = field(default_factory=dict)
    method: str = "embedding"


class Classifier(Protocol):
    async def classify(self, text: str) -> Classification: ...


class EmbeddingClassifier:
    def __init__(
        self,
        intents: Intents,
        embedder: Embedder,
        threshold: float = 0.82,
        neighbours: int = 3,
        pool: RoutingPool | None = None,
    ):
        self.pool = pool
        self.threshold = threshold
        self.neighbours = neighbours
        self.names: list[str] = []
        texts: list[str] = []
        for name, intent in intents.intents.items():
            self.names += [name] * len(intent.examples)
            texts += intent.examples
        self._labels = np.array(self.names)
        self._embedder = embedder
        # E5 wants "query: " on both sides for symmetric tasks (similarity, classification)
        self._examples = embedder.embed_queries(texts)
        self.texts = texts

    @property
    def vectors(self):
        """The example embeddings, one row per entry of `texts`/`names`."""
        return self._examples

    def classify_sync(self, text: str) -> Classification:
        q = self._embedder.embed_queries([text])[0]
        sims = self._examples @ q
        scores = {}
        for name in dict.fromkeys(self.names):
            s = np.sort(sims[self._labels == name])[::-1][: self.neighbours]
            scores[name] = round(float(s.mean()), 4)
        best = max(scores, key=scores.__getitem__)
        conf = scores[best]
        if conf < self.threshold:
            best = "out_of_scope"
        return Classification(best, conf, scores)

    async def classify(self, text: str) -> Classification:
        # embedding is native code (GIL released), ~40 ms for a short message and up to ~2 s for a full
        # window on this CPU: keep it off the event loop, on the router's lane for its length
        if self.pool is not None:
            return await self.pool.run(self.classify_sync, text, size=len(text))
        return await asyncio.to_thread(self.classify_sync, text)


_LLM_PROMPT = """Classify the user's message into exactly one intent. Answer with the intent name only.

{intents}

Message: {text}
Intent:"""


class LLMClassifier:
    """Ask the serving engine; falls back to the embedding classifier when the answer names no intent."""

    def __init__(self, intents: Intents, generate: Generate, fallback: EmbeddingClassifier):
        self.intents = intents
        self.generate = generate
        self.fallback = fallback

    async def classify(self, text: str) -> Classification:
        listing = "\n".join(f"- {n}: {i.description}" for n, i in self.intents.intents.items())
        msgs = [{"role": "user", "content": _LLM_PROMPT.format(intents=listing, text=text)}]
        out = []
        try:
            stream = self.generate(msgs, {"max_tokens": 8, "temperature": 0.0})
            if not hasattr(stream, "__aiter__"):
                stream = await stream
            async for delta in stream:
                out.append(delta)
        except Exception:  # engine busy or down: routing must still answer
            out = []
        answer = "".join(out).strip().lower()
        for name in sorted(ROUTES, key=len, reverse=True):
            if re.search(rf"\b{name}\b", answer):
                return Classification(name, 1.0, {}, method="llm")
        result = await self.fallback.classify(text)
        result.method = "llm-fallback"
        return result
