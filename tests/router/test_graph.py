"""The real routing graph (real classifier, real index) with a fake engine `generate` callable."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from serving.router.config import RouterConfig
from serving.router.service import RouteResult, build_router


class FakeEngine:
    """Records the messages it was sent and streams a fixed answer in three deltas."""

    def __init__(self):
        self.calls: list[list[dict]] = []

    async def __call__(self, messages, params):
        self.calls.append(messages)
        for part in ("根据文档", "，答案是", " [1]。"):
            await asyncio.sleep(0)
            yield part


def _run(router, text: str, engine: FakeEngine) -> tuple[list[str], RouteResult]:
    async def go():
        deltas, result = [], None
        async for ev in router.astream([{"role": "user", "content": text}], {"max_tokens": 32}, engine):
            if ev.delta is not None:
                deltas.append(ev.delta)
            else:
                result = ev.result
        return deltas, result

    return asyncio.run(go())


@pytest.fixture(scope="module")
def router(small_index):
    return build_router(RouterConfig(), index_dir=small_index[1])


def test_domain_route_retrieves_cites_and_streams(router):
    engine = FakeEngine()
    deltas, res = _run(router, "不小心 DROP 了一张表，怎么用 FLASHBACK 恢复？", engine)
    assert res.route == "domain" and not res.fallback and res.confidence > 0.5
    assert res.sources and res.sources[0]["path"].endswith("sql-statement-flashback-table.md")
    assert {"path", "title", "heading", "score"} <= set(res.sources[0])
    assert res.retrieved and all(r["id"] and r["score"] > 0 for r in res.retrieved)
    assert res.retrieval_ms is not None and res.retrieval_ms > 0 and res.generation_ms is not None
    system = engine.calls[0][0]
    assert system["role"] == "system" and "FLASHBACK" in system["content"] and "[1]" in system["content"]
    assert engine.calls[0][-1]["role"] == "user"
    answer = "".join(deltas)
    assert answer == res.answer and answer.startswith("根据文档，答案是 [1]。")
    assert "\n\nSources:\n[1]" in answer and "sql-statement-flashback-table.md" in answer.split("Sources:")[1]


def test_chat_route_passes_messages_through(router):
    engine = FakeEngine()
    deltas, res = _run(router, "你好，今天过得怎么样？", engine)
    assert res.route == "chat" and res.sources == [] and res.retrieved == []
    assert engine.calls == [[{"role": "user", "content": "你好，今天过得怎么样？"}]]
    assert "".join(deltas) == res.answer == "根据文档，答案是 [1]。"


@pytest.mark.parametrize(
    "text,lang_word", [("帮我写一首关于大海的诗", "抱歉"), ("What's a good recipe for lasagna?", "Sorry")]
)
def test_out_of_scope_refuses_without_engine(router, text, lang_word):
    engine = FakeEngine()
    deltas, res = _run(router, text, engine)
    assert res.route == "out_of_scope" and engine.calls == []
    assert "".join(deltas) == res.answer and res.answer.startswith(lang_word)


def test_retrieval_failure_falls_back_to_direct_answer(small_index, tmp_path: Path):
    engine = FakeEngine()
    router = build_router(RouterConfig(), index_dir=tmp_path / "no-index")
    deltas, res = _run(router, "TiKV 的数据是怎么存储的？", engine)
    assert res.route == "domain" and res.fallback and "empty" in (res.retrieval_error or "")
    assert res.sources == [] and "Sources" not in res.answer
    assert engine.calls == [[{"role": "user", "content": "TiKV 的数据是怎么存储的？"}]]


def test_corrupt_index_mid_flight_is_a_fallback(corpus_copy):
    _, index = corpus_copy
    engine = FakeEngine()
    router = build_router(RouterConfig(), index_dir=index)
    (index / "catalog.json").write_text("{not json", encoding="utf-8")
    _, res = _run(router, "GC 是怎么清理旧版本数据的？", engine)
    assert res.route == "domain" and res.fallback and "corrupt" in res.retrieval_error
    assert len(engine.calls) == 1


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
