"""Per-route sampling defaults (router.generation): applied on their route, the request's own values win."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from serving.router.config import RouteGeneration, RouterConfig
from serving.router.hook import gateway_router
from serving.router.service import build_router


@pytest.fixture(scope="module")
def router(small_index):
    cfg = RouterConfig(generation={"domain": RouteGeneration(repetition_penalty=1.25, max_tokens=300)})
    return build_router(cfg, index_dir=small_index[1])


def test_the_gateway_hook_carries_the_routes_defaults(router):
    hook = gateway_router(router)
    d = asyncio.run(hook([{"role": "user", "content": "TiKV 的 GC 是怎么清理旧版本数据的？"}]))
    assert d.route == "domain" and d.params == {"repetition_penalty": 1.25, "max_tokens": 300}
    d = asyncio.run(hook([{"role": "user", "content": "帮我写一首关于春天的诗"}]))
    assert d.route == "out_of_scope" and d.params == {}


def test_defaults_are_validated():
    assert RouterConfig().route_params("domain")["repetition_penalty"] > 1.0  # the shipped default
    with pytest.raises(ValidationError):
        RouteGeneration(repetition_penalty=0)
    with pytest.raises(ValidationError):
        RouteGeneration(stop_everything=True)
    with pytest.raises(ValidationError):
        RouterConfig(generation={"out_of_scope": {"temperature": 0.1}})  # refused without the engine
