"""Adapter from the routing graph to the gateway's router hook (serving.gateway.chat.Router).

The gateway owns the engine call (SSE relay, usage, errors, n > 1), so through the gateway the graph
runs in planning mode: classify → retrieve → prompt, and the gateway streams the engine's answer,
appends `sources_text` and puts `sources` on the response and the final stream chunk.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from serving.engine.client import EngineClient
from serving.gateway.chat import RouteDecision
from serving.records import RouteInfo
from serving.router.service import Router
from serving.router.workers import RouterBusy


def engine_generate(engine: EngineClient, timeout_s: float = 60.0):
    """A `generate` callable over the engine pool (one non-streamed completion), for the LLM classifier."""

    async def generate(messages: list[dict[str, Any]], params: dict[str, Any]):
        reply = await engine.complete({"messages": messages, **params}, timeout_s=timeout_s)
        if not reply.ok:
            raise RuntimeError(f"engine answered {reply.status}")
        yield reply.text()

    return generate


def direct_fallback(reason: str, **facts: Any) -> RouteDecision:
    """Serve the request without routing (no retrieval), flagged: routing must never fail a request."""
    return RouteDecision(RouteInfo(route="direct", fallback=True, fallback_reason=reason, **facts))


def gateway_router(router: Router, deadline_s: float | None = None):
    """The gateway's hook. Routing past `deadline_s` (router.deadline_s) is abandoned: direct route."""
    deadline = deadline_s if deadline_s is not None else router.config.deadline_s

    async def route(messages: list[dict[str, Any]]) -> RouteDecision:
        t = time.perf_counter()
        try:
            plan = await asyncio.wait_for(router.plan(messages), deadline)
        except TimeoutError:
            ms = round((time.perf_counter() - t) * 1000, 1)
            return direct_fallback(f"routing took longer than {deadline:g} s", routing_ms=ms)
        except RouterBusy as e:
            return direct_fallback(str(e))
        except Exception as e:  # the classifier itself failed: serve the request directly, never a 500
            return direct_fallback("router error", router_error=f"{type(e).__name__}: {e}")
        # the plan's own fields, by name (RouteInfo is the one shape routing facts travel in); retrieval
        # facts belong to the domain route only
        info = RouteInfo.model_validate(plan, from_attributes=True)
        if plan.route != "domain":
            info = info.model_copy(update={"fallback": False, "retrieval_error": None, "lexical_only": False})
        return RouteDecision(
            info,
            messages=plan.engine_messages,
            reply=plan.answer if plan.route == "out_of_scope" else None,
            sources_text=plan.sources_text,
            params=router.config.route_params(plan.route),
        )

    return route
