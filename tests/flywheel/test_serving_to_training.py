"""From a real gateway to training rows: real `keel up` (router on, real vLLM: the session platform's engine
borrowed as an external URL; four real TiDB docs indexed lexically), the openai client, feedback,
`keel mine`, `keel export`, `keel simulate`.

The check that matters: a training row's prompt is exactly what the engine received. The engine itself
says what it received (vLLM's rendered prompt text, kept in the request log); the exported row's prompt,
rendered with the model's own chat template, must be that text, character for character.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import openai
import pytest

from tests.harness import PlatformProcess, index_status, platform_running, routed_overrides

pytestmark = pytest.mark.slow

DOCS = [
    "tidb-storage.md",
    "garbage-collection-overview.md",
    "sql-statements/sql-statement-flashback-table.md",
    "sql-statements/sql-statement-show-engines.md",
]
DOMAIN = "误删了一张表，怎么用 FLASHBACK TABLE 恢复？"
DOMAIN_EN = "How does garbage collection clean up old MVCC versions in TiDB?"


@pytest.fixture(scope="module")
def routed(platform_server, base_model_dir, shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keel-s2t")
    src = shared_data / "domain" / "tidb-docs-zh" / "docs"
    for rel in DOCS:
        (tmp / "docs" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, tmp / "docs" / rel)
    # lexical retrieval is enough to take the domain route; no background embedding competing for CPU
    sets = routed_overrides(platform_server, tmp / "docs", "rag.background.dense=false")
    with platform_running(tmp, base_model_dir, sets) as p:
        index_status(p, lambda s: s.get("chunks_total"), timeout=120)
        key = p.create_key("s2t")
        client = openai.OpenAI(base_url=f"{p.url}/v1", api_key=key, max_retries=0, timeout=300)
        yield p, client, key


def _feedback(p: PlatformProcess, key: str, body: dict) -> None:
    r = httpx.post(f"{p.url}/v1/feedback", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 201, r.text


def _rows(snapshot: Path, part: str) -> list[tuple[dict, dict]]:
    train = (snapshot / part / "train.jsonl").read_text(encoding="utf-8").splitlines()
    prov = (snapshot / part / "provenance.jsonl").read_text(encoding="utf-8").splitlines()
    return [(json.loads(a), json.loads(b)) for a, b in zip(train, prov, strict=True)]


def test_training_rows_are_exactly_what_the_engine_received(routed, base_model_dir):
    p, client, key = routed
    ids = []
    raw = client.chat.completions.with_raw_response.create(
        model="keel", messages=[{"role": "user", "content": DOMAIN}], max_tokens=24, temperature=0
    )
    answer = raw.parse()
    assert answer.model_extra["keel"]["route"] == "domain", answer.model_extra
    shown = answer.choices[0].message.content
    assert "\n\nSources:\n[1]" in shown and "prompt_text" not in (answer.model_extra or {})
    ids.append(raw.headers["x-request-id"])
    stream = client.chat.completions.create(
        model="keel",
        messages=[{"role": "user", "content": DOMAIN_EN}],
        max_tokens=24,
        temperature=0,
        stream=True,
    )
    for chunk in stream:
        sid = chunk.id
    ids.append(sid)
    # one answer rated up (an SFT example), the other edited with the sources list kept (a pair + example)
    _feedback(p, key, {"type": "thumbs", "request_id": ids[0], "rating": "up"})
    _feedback(
        p,
        key,
        {
            "type": "edit",
            "request_id": ids[1],
            "edited_text": "GC 会清理旧版本。" + shown[shown.index("\n\nSources:") :],
        },
    )

    logged = {r["request_id"]: r for r in p.rows(ids)}
    for r in logged.values():
        assert r["route"] == "domain" and r["engine_messages"][0]["role"] == "system"
        assert "Documents:" in r["engine_messages"][0]["content"]  # the domain template with the chunks
        assert r["engine_prompt"] and r["appended_text"].startswith("\n\nSources:")
        assert r["response_text"] == r["completion_text"] + r["appended_text"]

    p.cli("mine")
    snap = Path(p.cli("export", "--include-unreviewed").stdout.strip().splitlines()[-1])
    sft, dpo = _rows(snap, "sft"), _rows(snap, "dpo")
    assert {prov["request_ids"][0] for _, prov in sft} == set(ids)
    assert [prov["request_ids"][0] for _, prov in dpo] == [ids[1]]

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_model_dir)
    for row, prov in sft:
        r = logged[prov["request_ids"][0]]
        prompt, reply = row["messages"][:-1], row["messages"][-1]["content"]
        assert prompt == [{"role": m["role"], "content": m["content"]} for m in r["engine_messages"]]
        rendered = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        assert rendered == r["engine_prompt"]  # what vLLM itself rendered for this request
        assert "Sources:" not in reply
        assert reply == (r["completion_text"] if prov["source"] == "thumbs_up" else "GC 会清理旧版本。")
    [(pair, _)] = dpo
    r = logged[ids[1]]
    assert (
        tok.apply_chat_template(pair["prompt"], tokenize=False, add_generation_prompt=True)
        == r["engine_prompt"]
    )
    assert pair["chosen"][0]["content"] == "GC 会清理旧版本。"
    assert pair["rejected"][0]["content"] == r["completion_text"]


def test_simulate_sends_tagged_traffic_and_feedback(routed):
    p, _, _ = routed
    proc = p.cli("simulate", "--rate", "1", "--duration", "20", "--seed", "3", "--max-tokens", "16", "--json")
    out = json.loads(proc.stdout)
    assert out["tag"].startswith("simulate-") and out["requests"] >= 5, out
    assert set(out["statuses"]) == {"200"}, out
    assert sum(out["feedback"].values()) > 0 and not out["errors"], out
    kinds = {k.split("/")[0] for k in out["by_kind"]}
    assert "domain" in kinds and len(kinds) >= 2, out
    # the judge scored the domain answers of seen questions only (the default split) and never failed
    judged = out["judged"]
    assert judged and {j["split"] for j in judged} == {"seen"} and out["judge"]["seen"]["n"] > 0, out
    assert all(0 <= j["score"] <= 1 for j in judged)
    keys = {k["name"]: k["key_id"] for k in json.loads(p.cli("keys", "list", "--json").stdout)}
    rows = p.rows(out["request_ids"])
    assert len(rows) == len(out["request_ids"]) and {r["key_id"] for r in rows} == {keys[out["tag"]]}
    routes = {r["route"] for r in rows}
    assert "domain" in routes, routes
    fb = p.admin("GET", "/admin/flywheel/feedback", params={"limit": 1000}).json()
    assert {f["request_id"] for f in fb} & set(out["request_ids"])

    bad = p.cli("simulate", "--rate", "0", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
