"""A planted request log + feedback in a temp DuckDB file (the real schema, no platform)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

FAQ_Q = "How do I change the default port that the TiDB server listens on?"
# what the gateway appends to a domain answer, and the prompt the engine gets on the domain route
SUFFIX = "\n\nSources:\n[1] TiDB 配置 / 端口 (tidb-configuration-file.md)"


def engine_messages(prompt: str) -> list[dict]:
    return [
        {"role": "system", "content": "Answer from the documents.\nDocuments:\n[1] TiDB listens on 4000."},
        *msgs(prompt),
    ]


def msgs(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def request(con, rid, key, prompt, answer, minute, **kw) -> None:
    """A row as the gateway logs it; a domain answer carries the sources suffix unless ``legacy`` (a row
    from before the log kept the engine's view: no engine messages, the suffix inside response_text)."""
    route = kw.get("route", "domain")
    domain = route == "domain" and bool(answer)
    row = {
        "request_id": rid,
        "created_at": T0 + timedelta(minutes=minute),
        "key_id": key,
        "messages": json.dumps(msgs(prompt)),
        "response_text": answer + SUFFIX if domain else answer,
        "route": route,
        "checkpoint_version": kw.get("version", "base") if route != "out_of_scope" else None,
        "status_code": kw.get("status", 200),
        "error": kw.get("error"),
        "regenerate_of": kw.get("regenerate_of"),
        "retrieved": json.dumps([]),
    }
    if not kw.get("legacy") and route != "out_of_scope":
        row["engine_messages"] = json.dumps(engine_messages(prompt) if route == "domain" else msgs(prompt))
        row["completion_text"] = answer
        row["appended_text"] = SUFFIX if domain else None
    cols = ",".join(row)
    con.execute(f"INSERT INTO requests ({cols}) VALUES ({','.join('?' * len(row))})", list(row.values()))


def review_pair(con, pid, rid, text, route, source="edit", minute=0, auto=None) -> None:
    """A mined pair (better/worse answer to ``text``) in the review queue, ``minute``s from now;
    ``auto``: the trust rule that accepted it without review."""
    row = {
        "pair_id": pid,
        "pair_key": f"{source}:{rid}",
        "source": source,
        "prompt": json.dumps(msgs(text), ensure_ascii=False),
        "chosen": "better answer",
        "rejected": "worse answer",
        "route": route,
        "retrieved": "[]",
        "provenance": json.dumps({"rule": source, "request_ids": [rid], "routes": [route]}),
        "auto_accepted_by": auto,
        "created_at": datetime.now(UTC) + timedelta(minutes=minute),
    }
    cols = ",".join(row)
    con.execute(f"INSERT INTO pairs ({cols}) VALUES ({','.join('?' * len(row))})", list(row.values()))


def review_items(con, items) -> None:
    """For each (pair_id, request_id, prompt, answer, route, source, auto): the logged request and the pair
    mined from it, queued in the order given."""
    for i, (pid, rid, prompt, answer, route, source, auto) in enumerate(items):
        request(con, rid, "key-user", prompt, answer, i + 1, route=route)
        review_pair(con, pid, rid, prompt, route, source, i, auto)


def feedback(con, fid, rid, key, kind, minute, **kw) -> None:
    con.execute(
        """INSERT INTO feedback (feedback_id, request_id, key_id, kind, rating, edited_text, other_request_id,
           preferred, dedup_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            fid,
            rid,
            key,
            kind,
            kw.get("rating"),
            kw.get("edited_text"),
            kw.get("other"),
            kw.get("preferred"),
            fid,
            T0 + timedelta(minutes=minute),
        ],
    )


def plant(con) -> dict[str, str]:
    """Each rule once, plus traps: a failed request, a duplicate edit, an eval-set prompt, PII."""
    # edit (with PII in the prompt)
    request(
        con, "r-edit", "k1", "Email alice@example.com: how do I add an index in TiDB?", "I do not know.", 0
    )
    # the user edited what they saw, the sources list included
    feedback(
        con, "f-edit", "r-edit", "k1", "edit", 1, edited_text="Use `CREATE INDEX idx ON t (c);`." + SUFFIX
    )
    # the same edit on the same prompt by another user: a near-duplicate pair
    request(
        con, "r-edit2", "k2", "Email alice@example.com: how do I add an index in TiDB?", "I do not know.", 2
    )
    feedback(con, "f-edit2", "r-edit2", "k2", "edit", 3, edited_text="Use `CREATE INDEX idx ON t (c);`.")
    # regeneration via the header link: down, then up
    request(con, "r-old", "k1", "What is TiKV?", "A kind of fruit.", 4)
    request(
        con,
        "r-new",
        "k1",
        "What is TiKV?",
        "TiKV is the distributed key-value storage layer of TiDB.",
        5,
        regenerate_of="r-old",
    )
    feedback(con, "f-down", "r-old", "k1", "thumbs", 6, rating=-1)
    feedback(con, "f-up", "r-new", "k1", "thumbs", 7, rating=1)
    # annotator choice between two answers to the same prompt
    request(con, "r-a", "k2", "Explain Raft in one sentence.", "Raft is a boat.", 8, version="base")
    request(
        con,
        "r-b",
        "k3",
        "Explain Raft in one sentence.",
        "Raft is a consensus algorithm for replicated logs.",
        9,
        version="v2",
    )
    feedback(con, "f-choice", "r-a", "ann", "choice", 10, other="r-b", preferred="other")
    # thumbs on near-identical prompts from different users
    request(con, "r-good", "k2", "What port does the TiDB server listen on by default?", "Port 4000.", 11)
    request(con, "r-bad", "k3", "What port does the TiDB server listen on by default ?", "Port 80.", 12)
    feedback(con, "f-good", "r-good", "k2", "thumbs", 13, rating=1)
    feedback(con, "f-bad", "r-bad", "k3", "thumbs", 14, rating=-1)
    # a failed request rated down: skipped
    request(
        con,
        "r-fail",
        "k3",
        "What port does the TiDB server listen on by default?",
        "",
        15,
        status=502,
        error="engine error",
    )
    feedback(con, "f-fail", "r-fail", "k3", "thumbs", 16, rating=-1)
    # an answer rated up whose prompt is an evaluation question: dropped
    request(con, "r-eval", "k2", FAQ_Q, "Set `port` in the [server] section of the config file.", 17)
    feedback(con, "f-eval", "r-eval", "k2", "thumbs", 18, rating=1)
    # rated up, but unusable for training: an older domain row (the prompt the engine got is unknown)
    # and an out-of-scope refusal (a canned reply, not the model's tokens)
    request(
        con, "r-legacy", "k2", "Which storage engine does TiFlash use?", "A columnar one.", 19, legacy=True
    )
    feedback(con, "f-legacy", "r-legacy", "k2", "thumbs", 20, rating=1)
    request(
        con,
        "r-oos",
        "k2",
        "Write me a poem about spring.",
        "Sorry, I only answer TiDB questions.",
        21,
        route="out_of_scope",
    )
    feedback(con, "f-oos", "r-oos", "k2", "thumbs", 22, rating=1)
    return {"eval_question": FAQ_Q}
