"""Every route end to end: real `keel up` with the router on, real vLLM (the session platform's engine,
borrowed as an external URL: this platform has its own database and index), the openai client, DuckDB rows.

The platform indexes its configured corpus by itself at start (rag.corpus_paths: four real TiDB docs
copied to a temporary folder): lexical at once, dense in the background, into a fresh index folder.
"""

from __future__ import annotations

import shutil

import openai
import pytest

from tests.harness import index_status, platform_running, routed_overrides

pytestmark = pytest.mark.slow

DOMAIN = [{"role": "user", "content": "误删了一张表，怎么用 FLASHBACK TABLE 恢复？"}]
CHAT = [{"role": "user", "content": "你好，谢谢你的帮助！"}]
OOS = [{"role": "user", "content": "帮我写一首关于春天的诗"}]


@pytest.fixture(scope="module")
def routed(platform_server, base_model_dir, small_index, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keel-routed")
    docs = tmp / "docs"
    shutil.copytree(small_index[0], docs)  # the docs only: the platform builds the index itself
    # nice 19 is the default (tests/rag/test_background.py checks it); here a milder one keeps a busy test
    # machine from starving the ~30-chunk embedding this fixture waits for
    sets = routed_overrides(platform_server, docs, "rag.background.pause_s=0", "rag.background.nice=5")
    with platform_running(tmp, base_model_dir, sets) as p:
        # lexical first (seconds), then every chunk embedded in the platform's background worker; the
        # tests compare stream and non-stream sources, so they start on the finished index
        st = index_status(p, lambda s: s["chunks_total"] and not s["dense_pending"] and s["state"] == "idle")
        assert st["chunks_total"] > 0 and st["chunks_embedded"] == st["chunks_total"], st
        assert "4 files (4 new" in st["last_lexical"], st
        key = p.create_key("router-tests")
        yield p, openai.OpenAI(base_url=f"{p.url}/v1", api_key=key, max_retries=0, timeout=120), docs


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
    server, client, _ = routed
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


def test_domain_route_hands_the_retrieved_chunks_to_the_engine(routed):
    """(Runs before the test that breaks retrieval on purpose.) The gateway's real path (router.plan → engine messages → vLLM), not a fake engine: the text of the
    retrieved document is in the messages the engine got and in the prompt vLLM rendered from them."""
    server, client, docs = routed
    raw = client.chat.completions.with_raw_response.create(
        model="keel", messages=DOMAIN, max_tokens=8, temperature=0
    )
    [row] = server.rows([raw.headers["x-request-id"]])
    assert row["route"] == "domain" and row["retrieved"]
    [doc] = list(docs.rglob("sql-statement-flashback-table.md"))
    lines = [ln.strip() for ln in doc.read_text(encoding="utf-8").splitlines() if len(ln.strip()) >= 20]
    sent = "\n".join(m["content"] for m in row["engine_messages"])
    handed = [ln for ln in lines if ln in sent]
    assert handed, "no line of the retrieved document reached the engine"
    assert DOMAIN[0]["content"] in sent and len(sent) > len(DOMAIN[0]["content"]) + 200
    assert all(ln in row["engine_prompt"] for ln in handed), "vLLM's rendered prompt lacks the chunks"


def test_chat_route_streams_from_the_engine(routed):
    server, client, _ = routed
    text, keel, rid = _stream(client, CHAT)
    assert text and keel == {"route": "chat", "sources": []}
    [row] = server.rows([rid])
    assert row["route"] == "chat" and row["retrieved"] == [] and row["checkpoint_version"] == "base"
    assert row["generation_ms"] > 0 and row["retrieval_ms"] is None


def test_out_of_scope_is_refused_without_the_engine(routed):
    server, client, _ = routed
    completion = client.chat.completions.create(model="keel", messages=OOS, max_tokens=24)
    assert completion.choices[0].message.content.startswith("抱歉")
    assert completion.model_extra["keel"]["route"] == "out_of_scope"
    text, keel, rid = _stream(client, OOS)
    assert text == completion.choices[0].message.content and keel["route"] == "out_of_scope"
    [row] = server.rows([rid])
    assert (
        row["route"] == "out_of_scope" and row["checkpoint_version"] is None and row["route_confidence"] > 0
    )


def test_keel_index_goes_through_the_running_platform(routed, tmp_path):
    server, client, docs = routed
    new = tmp_path / "extra"
    new.mkdir()
    (new / "keel-zebra.md").write_text(
        "---\ntitle: ZEBRA 参数说明\n---\n\n# ZEBRA 参数说明\n\n"
        "`tidb_zebra_stripes` 控制斑马条纹的数量，默认值为 7，取值范围 1 到 42。\n",
        encoding="utf-8",
    )
    proc = server.cli("index", str(new), "-q")  # the platform owns Chroma: the CLI must not open it
    assert "platform at" in proc.stdout and "1 files (1 new" in proc.stdout, proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("embedded "), proc.stdout
    st = server.admin("GET", "/admin/index").json()
    assert st["chunks_embedded"] == st["chunks_total"] and not st["dense_pending"], st

    q = [{"role": "user", "content": "TiDB 的 tidb_zebra_stripes 参数默认值是多少？"}]
    completion = client.chat.completions.create(model="keel", messages=q, max_tokens=16, temperature=0)
    keel = completion.model_extra["keel"]
    assert keel["route"] == "domain" and keel["sources"][0]["path"].endswith("keel-zebra.md"), keel

    bad = server.cli("index", str(tmp_path / "missing"), check=False)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0
    assert "no such file or folder" in bad.stderr, bad.stderr


def test_retrieval_failure_is_a_flagged_direct_answer(routed):
    """Runs last in this module: it breaks the platform's index on purpose (and restarts it once)."""
    server, client, _ = routed
    catalog = server.data_dir / "rag" / "catalog.json"
    catalog.write_text("{not json", encoding="utf-8")
    # behind the running platform's back: requests never reload the catalog (the indexer owns that),
    # so they keep searching the one loaded
    kept = client.chat.completions.create(model="keel", messages=DOMAIN, max_tokens=8, temperature=0)
    assert kept.model_extra["keel"]["route"] == "domain" and kept.model_extra["keel"]["sources"]
    # a platform started on the corrupt index serves, and says why domain answers have no sources
    server.stop()
    server.start()
    raw = client.chat.completions.with_raw_response.create(
        model="keel", messages=DOMAIN, max_tokens=16, temperature=0
    )
    assert raw.http_response.status_code == 200
    completion = raw.parse()
    keel = completion.model_extra["keel"]
    assert (keel["route"], keel["sources"]) == ("domain", []), keel
    assert "Sources:" not in completion.choices[0].message.content
    [row] = server.rows([raw.headers["x-request-id"]])
    assert row["status_code"] == 200 and row["route"] == "domain" and row["retrieved"] == []
    assert row["route_info"]["fallback"] is True and "corrupt" in row["route_info"]["retrieval_error"], row[
        "route_info"
    ]
