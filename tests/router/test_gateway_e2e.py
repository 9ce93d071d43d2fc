"""Every route end to end: real `keel up` with the router on, real vLLM, the openai client, DuckDB rows."""

from __future__ import annotations

import openai
import pytest

from tests.harness import PlatformProcess

pytestmark = pytest.mark.slow

DOMAIN = [{"role": "user", "content": "误删了一张表，怎么用 FLASHBACK TABLE 恢复？"}]
CHAT = [{"role": "user", "content": "你好，谢谢你的帮助！"}]
OOS = [{"role": "user", "content": "帮我写一首关于春天的诗"}]


@pytest.fixture(scope="module")
def routed(base_model_dir, small_index, tmp_path_factory):
    p = PlatformProcess(
        data_dir=tmp_path_factory.mktemp("keel-routed"),
        model_dir=base_model_dir,
        overrides=["router.enabled=true", f"rag.index_dir={small_index[1]}"],
    )
    p.start()
    try:
        key = p.create_key("router-tests")
        yield p, openai.OpenAI(base_url=f"{p.url}/v1", api_key=key, max_retries=0, timeout=120)
    finally:
        p.stop()


def _stream(client, messages):
    parts, last, rid = [], None, None
    for chunk in client.chat.completions.create(
        model="keel", messages=messages, max_tokens=24, temperature=0, stream=True
    ):
        rid = chunk.id
        for c in chunk.choices:
            parts.append(c.delta.content or "")
        last = chunk
    return "".join(parts), (last.model_extra or {}).get("keel"), rid


def test_domain_route_cites_sources_and_logs_retrieval(routed):
    server, client = routed
    raw = client.chat.completions.with_raw_response.create(
        model="keel", messages=DOMAIN, max_tokens=24, temperature=0
    )
    completion = raw.parse()
    keel = completion.model_extra["keel"]
    assert keel["route"] == "domain" and keel["sources"]
    assert keel["sources"][0]["path"].endswith("sql-statement-flashback-table.md")
    assert {"path", "title", "heading", "score"} <= set(keel["sources"][0])
    text = completion.choices[0].message.content
    assert "\n\nSources:\n[1]" in text and "flashback-table.md" in text

    streamed, skeel, sid = _stream(client, DOMAIN)
    assert skeel and skeel["route"] == "domain" and skeel["sources"] == keel["sources"]
    assert streamed.endswith(text.split("\n\nSources:")[1]) and "Sources:" in streamed

    rows = {r["request_id"]: r for r in server.rows([raw.headers["x-request-id"], sid])}
    for row in rows.values():
        assert row["route"] == "domain" and row["route_confidence"] > 0.5
        assert row["retrieved"] and all(r["id"] and r["score"] > 0 for r in row["retrieved"])
        assert row["retrieval_ms"] > 0 and row["generation_ms"] > 0
        assert "Sources:" in row["response_text"]


def test_chat_route_streams_from_the_engine(routed):
    server, client = routed
    text, keel, rid = _stream(client, CHAT)
    assert text and keel == {"route": "chat", "sources": []}
    [row] = server.rows([rid])
    assert row["route"] == "chat" and row["retrieved"] == [] and row["checkpoint_version"] == "base"
    assert row["generation_ms"] > 0 and row["retrieval_ms"] is None


def test_out_of_scope_is_refused_without_the_engine(routed):
    server, client = routed
    completion = client.chat.completions.create(model="keel", messages=OOS, max_tokens=24)
    assert completion.choices[0].message.content.startswith("抱歉")
    assert completion.model_extra["keel"]["route"] == "out_of_scope"
    text, keel, rid = _stream(client, OOS)
    assert text == completion.choices[0].message.content and keel["route"] == "out_of_scope"
    [row] = server.rows([rid])
    assert (
        row["route"] == "out_of_scope" and row["checkpoint_version"] is None and row["route_confidence"] > 0
    )
