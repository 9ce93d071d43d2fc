"""Adapter from the routing graph to the gateway's router hook (serving.gateway.chat.Router).

The gateway owns the engine call (SSE relay, usage, errors, n > 1), so through the gateway the graph
runs in planning mode: classify → retrieve → prompt, and the gateway streams the engine's answer,
appends `sources_text` and puts `sources` on the response and the final stream chunk.
"""

from __future__ import annotations

from typing import Any

from serving.engine.pool import EnginePool
from serving.gateway.chat import RouteDecision
from serving.router.service import Router


def engine_generate(pool: EnginePool, client, model: str, timeout_s: float = 60.0):
    """A `generate` callable over the engine pool (one non-streamed completion), for the LLM classifier."""

    async def generate(messages: list[dict[str, Any]], params: dict[str, Any]):
        body = {"model": model, "messages": messages, **params, "stream": False}
        async with pool.lease() as ep:
            r = await client.post(f"{ep.url}/v1/chat/completions", json=body, timeout=timeout_s)
        r.raise_for_status()
        yield (r.json()["choices"][0]["message"].get("content") or "")

    return generate


def gateway_router(router: Router):
    async def route(messages: list[dict[str, Any]]) -> RouteDecision:
        try:
            plan = await router.plan(messages)
        except Exception as e:  # the classifier itself failed: serve the request directly, never a 500
            return RouteDecision(route="direct", meta={"router_error": f"{type(e).__name__}: {e}"})
        meta: dict[str, Any] = {"classify_ms": plan.classify_ms, "route_scores": plan.scores}
        if plan.sources_text:
            meta["sources_text"] = plan.sources_text
        if plan.route == "domain":
            meta["fallback"] = plan.fallback
            if plan.retrieval_error:
                meta["retrieval_error"] = plan.retrieval_error
        return RouteDecision(
            route=plan.route,
            confidence=plan.confidence,
            messages=plan.engine_messages,
            reply=plan.answer if plan.route == "out_of_scope" else None,
            sources=plan.sources,
            retrieved=plan.retrieved,
            retrieval_ms=plan.retrieval_ms,
            meta=meta,
        )

    return route
