"""Per-route sampling defaults (router.generation): applied on their route, the request's own values win."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from serving.router.config import RouteGeneration, RouterConfig
from serving.router.hook import gateway_router
from serving.router.service import build_router


class Recorder:
    def __init__(self):
        self.params: list[dict] = []

    async def __call__(self, messages, params):
        self.params.append(dict(params))
        yield "ok"


@pytest.fixture(scope="module")
def router(small_index):
    cfg = RouterConfig(generation={"domain": RouteGeneration(repetition_penalty=1.25, max_tokens=300)})
    return build_router(cfg, index_dir=small_index[1])


def _params(router, text: str, asked: dict) -> dict:
    engine = Recorder()
    result = asyncio.run(router.ainvoke([{"role": "user", "content": text}], asked, engine))
    return result.route, engine.params[0]


def test_domain_defaults_apply_and_the_request_wins(router):
    route, p = _params(router, "TiKV 的 GC 是怎么清理旧版本数据的？", {"temperature": 0})
    assert route == "domain" and p == {"repetition_penalty": 1.25, "max_tokens": 300, "temperature": 0}
    route, p = _params(
        router, "TiKV 的 GC 是怎么清理旧版本数据的？", {"repetition_penalty": 1.0, "max_tokens": None}
    )
    assert route == "domain" and p == {"repetition_penalty": 1.0, "max_tokens": 300}
    route, p = _params(router, "你好，谢谢你！", {"temperature": 0})
    assert route == "chat" and p == {"temperature": 0}  # no chat defaults configured


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
