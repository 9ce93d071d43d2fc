"""The real routing graph (real classifier, real index): the plan the gateway sends to the engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from serving.router.config import RouterConfig
from serving.router.service import RoutePlan, build_router


def _plan(router, text: str) -> RoutePlan:
    return asyncio.run(router.plan([{"role": "user", "content": text}]))


@pytest.fixture(scope="module")
def router(small_index):
    return build_router(RouterConfig(), index_dir=small_index[1])


def test_domain_route_retrieves_and_builds_a_cited_prompt(router):
    res = _plan(router, "不小心 DROP 了一张表，怎么用 FLASHBACK 恢复？")
    assert res.route == "domain" and not res.fallback and res.confidence > 0.5
    assert res.sources and res.sources[0]["path"].endswith("sql-statement-flashback-table.md")
    assert {"path", "title", "heading", "score"} <= set(res.sources[0])
    assert res.retrieved and all(r["id"] and r["score"] > 0 for r in res.retrieved)
    assert res.retrieval_ms is not None and res.retrieval_ms > 0 and res.total_ms >= res.retrieval_ms
    system = res.engine_messages[0]
    assert system["role"] == "system" and "FLASHBACK" in system["content"] and "[1]" in system["content"]
    assert res.engine_messages[-1] == {
        "role": "user",
        "content": "不小心 DROP 了一张表，怎么用 FLASHBACK 恢复？",
    }
    # what the gateway appends to the engine's answer: the sources list, in the one place it is built
    tail = res.sources_text
    assert tail.startswith("\n\nSources:\n[1]") and "sql-statement-flashback-table.md" in tail


def test_chat_route_passes_messages_through(router):
    res = _plan(router, "你好，今天过得怎么样？")
    assert res.route == "chat" and res.sources == [] and res.retrieved == [] and res.sources_text == ""
    assert res.engine_messages == [{"role": "user", "content": "你好，今天过得怎么样？"}]


@pytest.mark.parametrize(
    "text,lang_word", [("帮我写一首关于大海的诗", "抱歉"), ("What's a good recipe for lasagna?", "Sorry")]
)
def test_out_of_scope_refuses_without_engine(router, text, lang_word):
    res = _plan(router, text)
    assert res.route == "out_of_scope" and res.engine_messages is None
    assert res.answer.startswith(lang_word)


def test_retrieval_failure_falls_back_to_direct_answer(small_index, tmp_path: Path):
    router = build_router(RouterConfig(), index_dir=tmp_path / "no-index")
    res = _plan(router, "TiKV 的数据是怎么存储的？")
    assert res.route == "domain" and res.fallback and "empty" in (res.retrieval_error or "")
    assert res.sources == [] and res.sources_text == ""
    assert res.engine_messages == [{"role": "user", "content": "TiKV 的数据是怎么存储的？"}]


def test_corrupt_index_mid_flight_is_a_fallback(corpus_copy):
    _, index = corpus_copy
    router = build_router(RouterConfig(), index_dir=index)
    (index / "catalog.json").write_text("{not json", encoding="utf-8")
    res = _plan(router, "GC 是怎么清理旧版本数据的？")
    assert res.route == "domain" and res.fallback and "corrupt" in res.retrieval_error
    assert res.engine_messages == [{"role": "user", "content": "GC 是怎么清理旧版本数据的？"}]


def test_llm_classifier_switch_and_fallback(small_index):
    from serving.router.classifier import LLMClassifier

    async def says_chat(messages, params):
        assert "Intent:" in messages[-1]["content"] and params["max_tokens"] <= 8
        yield " chat"

    async def broken(messages, params):
        raise RuntimeError("engine down")
        yield ""  # pragma: no cover

    cfg = RouterConfig(classifier="llm")
    router = build_router(cfg, index_dir=small_index[1], generate=says_chat)
    assert isinstance(router.classifier, LLMClassifier)
    c = asyncio.run(router.classifier.classify("TiKV 怎么扩容？"))
    assert (c.intent, c.method) == ("chat", "llm")
    router = build_router(cfg, index_dir=small_index[1], generate=broken)
    c = asyncio.run(router.classifier.classify("TiKV 怎么扩容？"))
    assert (c.intent, c.method) == ("domain", "llm-fallback")
