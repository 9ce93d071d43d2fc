"""`Router`: the routing graph behind the one call the gateway needs, a plan for each request.

router = build_router(RouterConfig(), RagConfig(), index_dir)
plan = await router.plan(messages)   # RoutePlan: route, confidence, engine messages, sources, latencies
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.rag.config import RagConfig
from serving.rag.embedder import Embedder, load_embedder
from serving.rag.retriever import Retriever
from serving.router.classifier import EmbeddingClassifier, Generate, LLMClassifier
from serving.router.config import RouterConfig
from serving.router.graph import build_graph
from serving.router.intents import Intents, load_intents
from serving.router.linear import LinearClassifier, LinearModel, load_model
from serving.router.workers import RoutingPool


@dataclass
class RoutePlan:
    """A route decided and its prompt built; generation is the caller's (the gateway's)."""

    route: str
    confidence: float
    answer: str = ""  # out_of_scope: the refusal to send instead of an engine answer
    scores: dict[str, float] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)  # path, title, heading, score, id, index
    retrieved: list[dict[str, Any]] = field(default_factory=list)  # every retrieved chunk: id, score
    fallback: bool = False  # domain route answered without documents (retrieval failed or empty)
    retrieval_error: str | None = None
    lexical_only: bool = False  # retrieved while the dense index was incomplete: BM25 only
    classify_ms: float | None = None
    retrieval_ms: float | None = None
    total_ms: float | None = None
    engine_messages: list[dict[str, Any]] | None = None  # None on out_of_scope: `answer` is the reply
    sources_text: str = ""  # what to append to the engine's answer


def _plan(state: dict[str, Any], total_ms: float) -> RoutePlan:
    route = state.get("intent", "chat")
    return RoutePlan(
        route=route,
        confidence=float(state.get("confidence") or 0.0),
        answer=state.get("answer", ""),
        scores=state.get("scores") or {},
        sources=state.get("sources") or [],
        retrieved=[{"id": h.id, "score": h.score} for h in state.get("hits") or []],
        fallback=bool(state.get("fallback")),
        retrieval_error=state.get("retrieval_error"),
        lexical_only=bool(state.get("lexical_only")),
        classify_ms=state.get("classify_ms"),
        retrieval_ms=state.get("retrieval_ms"),
        total_ms=total_ms,
        engine_messages=state.get("engine_messages") if route != "out_of_scope" else None,
        sources_text=state.get("sources_text") or "",
    )


class Router:
    def __init__(
        self,
        graph,
        classifier,
        retriever: Retriever | None,
        config: RouterConfig | None = None,
        pool: RoutingPool | None = None,
    ):
        self.config = config or RouterConfig()
        self.pool = pool
        self.graph = graph
        self.classifier = classifier
        self.retriever = retriever

    def use_model(self, model: LinearModel) -> bool:
        """Serve a refitted linear model from the next request on; False when the router is not linear."""
        if not isinstance(self.classifier, ClassifierSlot):
            return False
        old = self.classifier.inner
        self.classifier.inner = LinearClassifier(model, old._embedder, pool=old.pool)
        return True

    def close(self) -> None:
        """Stop the routing threads (queued work is dropped; running embeddings end within their window)."""
        if self.pool is not None:
            self.pool.shutdown()

    def warmup(self) -> None:
        """Load the catalog, build BM25 and touch the models now rather than in the first request."""
        if self.retriever is not None:
            # an unusable index shows up per request as a flagged fallback, not at start
            with contextlib.suppress(Exception):
                self.retriever.refresh()

    async def plan(self, messages: list[dict[str, Any]]) -> RoutePlan:
        """Classify, retrieve and build the engine messages (the gateway generates)."""
        t = time.perf_counter()
        state = await self.graph.ainvoke({"messages": messages})
        return _plan(state, (time.perf_counter() - t) * 1000)


class ClassifierSlot:
    """The classifier the graph calls, replaceable in one assignment (a request in flight keeps the
    classifier it started with)."""

    def __init__(self, inner: LinearClassifier):
        self.inner = inner

    async def classify(self, text: str):
        return await self.inner.classify(text)

    def classify_sync(self, text: str):
        return self.inner.classify_sync(text)


def build_router(
    config: RouterConfig | None = None,
    rag: RagConfig | None = None,
    index_dir: Path | None = None,
    embedder: Embedder | None = None,
    generate: Generate | None = None,
    intents: Intents | None = None,
) -> Router:
    """Everything the graph needs, built once at start. No index_dir: the domain route always falls back."""
    config = config or RouterConfig()
    rag = rag or RagConfig()
    embedder = embedder or load_embedder(rag.embedder, rag.embed_runtime, rag.embed_device)
    intents = intents or load_intents(config.intents_file)
    pool = RoutingPool(config.workers, config.long_workers, config.long_chars, config.queue, config.long_nice)
    classifier: Any
    if config.classifier == "linear":
        # in a slot, so a refitted model can replace it while the platform serves (Router.use_model)
        classifier = ClassifierSlot(LinearClassifier(load_model(config.model_file), embedder, pool=pool))
    else:
        classifier = EmbeddingClassifier(intents, embedder, config.threshold, config.neighbours, pool=pool)
    if config.classifier == "llm":
        if generate is None:
            raise ValueError("router.classifier=llm needs a generate callable")
        classifier = LLMClassifier(intents, generate, classifier)
    retriever = Retriever(index_dir, rag, embedder) if index_dir else None
    if retriever is not None:
        # the domain examples are typical user questions: the reference for the hubness correction
        retriever.set_reference(list(intents.intents["domain"].examples))
    graph = build_graph(classifier, retriever, intents, config, pool=pool)
    return Router(graph, classifier, retriever, config=config, pool=pool)
