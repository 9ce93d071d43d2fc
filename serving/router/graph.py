"""The routing graph: classify → {domain: retrieve → prompt; chat; out_of_scope: refuse}.

The graph plans a request and stops once the engine messages are ready (state "engine_messages",
"sources_text"); the gateway sends them to the engine through its one engine client and streams the
answer itself. A retrieval failure never escapes: the domain route then answers directly and flags
`fallback`.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any, TypedDict

import jinja2
from langgraph.graph import END, START, StateGraph

from serving.rag.embedder import head_tail
from serving.rag.retriever import Hit, Retriever
from serving.router.classifier import Classifier
from serving.router.config import RouterConfig
from serving.router.intents import Intents
from serving.router.workers import RoutingPool

DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "domain.jinja"
_CJK = re.compile(r"[\u3400-\u9fff]")


class RouteState(TypedDict, total=False):
    messages: list[dict[str, Any]]
    query: str
    lang: str
    intent: str
    confidence: float
    scores: dict[str, float]
    classify_ms: float
    hits: list[Hit]
    retrieval_ms: float
    retrieval_error: str | None
    lexical_only: bool  # the dense index is incomplete: what was retrieved came from BM25 alone
    fallback: bool
    sources: list[dict[str, Any]]
    engine_messages: list[dict[str, Any]]
    sources_text: str
    answer: str  # out_of_scope: the refusal


def message_text(content: Any) -> str:
    """Text of an OpenAI message content (a string or a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return message_text(m.get("content")).strip()
    return ""


def sources_of(hits: list[Hit]) -> list[dict[str, Any]]:
    """One source per (document, heading), in rank order, numbered as in the prompt."""
    out: list[dict[str, Any]] = []
    for n, h in enumerate(hits, 1):
        out.append(
            {
                "index": n,
                "id": h.id,
                "path": h.relpath,
                "title": h.title,
                "heading": h.heading,
                "score": h.score,
            }
        )
    return out


def format_sources(sources: list[dict[str, Any]]) -> str:
    """The short list appended to domain answers; chunks of one section share a line ("[2][3] ...")."""
    lines: dict[tuple[str, str], list[str]] = {}
    names: dict[tuple[str, str], str] = {}
    for s in sources:
        key = (s["path"], s["heading"])
        heading = s["heading"]
        if heading == s["title"] or heading.startswith(s["title"] + " > "):
            heading = heading[len(s["title"]) :].lstrip(" >")
        names[key] = f"{s['title']} / {heading}" if heading else s["title"]
        lines.setdefault(key, []).append(f"[{s['index']}]")
    body = "\n".join(f"{''.join(nums)} {names[k]} ({k[0]})" for k, nums in lines.items())
    return "\n\nSources:\n" + body


def build_graph(
    classifier: Classifier,
    retriever: Retriever | None,
    intents: Intents,
    config: RouterConfig | None = None,
    template_path: Path | None = None,
    pool: RoutingPool | None = None,
):
    """Compile the routing graph (its state: RouteState)."""
    cfg = config or RouterConfig()
    tpath = Path(template_path or cfg.domain_template or DEFAULT_TEMPLATE)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(tpath.parent)), keep_trailing_newline=True)
    template = env.get_template(tpath.name)

    async def classify(state: RouteState) -> RouteState:
        t = time.perf_counter()
        # a bounded part of the message (head and tail): routing cost must not grow with a long paste
        query = head_tail(last_user_text(state["messages"]), cfg.query_chars)
        lang = "zh" if _CJK.search(query) else "en"
        if not query:
            return {
                "query": "",
                "lang": lang,
                "intent": "chat",
                "confidence": 0.0,
                "scores": {},
                "classify_ms": 0.0,
            }
        c = await classifier.classify(query)
        ms = (time.perf_counter() - t) * 1000
        return {
            "query": query,
            "lang": lang,
            "intent": c.intent,
            "confidence": c.confidence,
            "scores": c.scores,
            "classify_ms": ms,
        }

    async def retrieve(state: RouteState) -> RouteState:
        t = time.perf_counter()
        try:
            if retriever is None:
                raise RuntimeError("no document index configured")
            # search is CPU-bound (embedding + BM25): keep it off the event loop
            args = (retriever.search, state["query"], cfg.context_chunks)
            if pool is not None:
                hits = await pool.run(*args, size=len(state["query"]))
            else:
                hits = await asyncio.to_thread(*args)
            err = None if hits else "no documents matched"
        except Exception as e:
            hits, err = [], f"{type(e).__name__}: {e}"
        ms = (time.perf_counter() - t) * 1000
        lexical_only = retriever is not None and retriever.lexical_only()
        return {
            "hits": hits,
            "retrieval_ms": ms,
            "retrieval_error": err,
            "fallback": not hits,
            "lexical_only": lexical_only,
        }

    async def prompt(state: RouteState) -> RouteState:
        """Domain route: the engine messages with the retrieved chunks; without hits, the user's messages."""
        hits = state.get("hits") or []
        if not hits:  # retrieval failed: answer directly, flagged as fallback
            return {"engine_messages": state["messages"], "sources": [], "sources_text": ""}
        docs, used = [], 0
        for n, h in enumerate(hits, 1):
            text = h.text[: max(0, cfg.max_context_chars - used)]
            if not text:
                break
            used += len(text)
            docs.append(
                {"index": n, "title": h.title, "heading": h.heading, "relpath": h.relpath, "text": text}
            )
        sources = sources_of(hits[: len(docs)])
        extra = "\n".join(
            message_text(m.get("content")) for m in state["messages"] if m.get("role") == "system"
        )
        system = template.render(documents=docs, lang=state.get("lang", "en"), extra_system=extra).strip()
        messages = [{"role": "system", "content": system}] + [
            m for m in state["messages"] if m.get("role") != "system"
        ]
        tail = format_sources(sources) if cfg.sources_in_message else ""
        return {"engine_messages": messages, "sources": sources, "sources_text": tail}

    async def chat(state: RouteState) -> RouteState:
        return {"engine_messages": state["messages"], "sources": [], "sources_text": ""}

    async def refuse(state: RouteState) -> RouteState:
        return {"answer": intents.refusal(state.get("lang", "en")), "sources": [], "sources_text": ""}

    def route(state: RouteState) -> str:
        return {"domain": "retrieve", "chat": "chat", "out_of_scope": "refuse"}.get(state["intent"], "chat")

    g = StateGraph(RouteState)
    g.add_node("classify", classify)
    g.add_node("retrieve", retrieve)
    g.add_node("prompt", prompt)
    g.add_node("chat", chat)
    g.add_node("refuse", refuse)
    g.add_edge(START, "classify")
    g.add_conditional_edges("classify", route, ["retrieve", "chat", "refuse"])
    g.add_edge("retrieve", "prompt")
    g.add_edge("refuse", END)
    g.add_edge("prompt", END)
    g.add_edge("chat", END)
    return g.compile()
