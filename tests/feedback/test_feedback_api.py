"""POST /v1/feedback through the real gateway (session platform with a real vLLM engine)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow

ASK = {"model": "keel", "messages": [{"role": "user", "content": "Name one colour."}], "max_tokens": 8}


def _post(server, key: str, path: str, **kw) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=120, **kw)


def _ask(server, key: str, **headers: str) -> str:
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        json=ASK,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def _feedback_rows(server, request_id: str) -> list[dict]:
    r = server.admin("GET", "/admin/flywheel/feedback", params={"request_id": request_id})
    r.raise_for_status()
    return r.json()


@pytest.fixture(scope="module")
def keys(platform_server):
    return {
        "user": platform_server.create_key("fb-user"),
        "other": platform_server.create_key("fb-other"),
        "annotator": platform_server.create_key("fb-annotator", "annotator"),
    }


def test_thumbs_edit_and_duplicates(platform_server, keys):
    rid = _ask(platform_server, keys["user"])  # feedback right away: the row may still be queued
    up = {"request_id": rid, "type": "thumbs", "rating": "down", "comment": "too short"}
    r1 = _post(platform_server, keys["user"], "/v1/feedback", json=up)
    assert r1.status_code == 201, r1.text
    body = r1.json()
    assert body["object"] == "feedback" and body["request_id"] == rid and not body["duplicate"]
    r2 = _post(platform_server, keys["user"], "/v1/feedback", json=up)  # a retry
    assert r2.status_code == 200 and r2.json()["id"] == body["id"] and r2.json()["duplicate"]

    edit = {"request_id": rid, "type": "edit", "edited_text": "Blue. <script>alert(1)</script>"}
    r3 = _post(platform_server, keys["user"], "/v1/feedback", json=edit)
    assert r3.status_code == 201, r3.text

    rows = _feedback_rows(platform_server, rid)
    assert sorted(r["kind"] for r in rows) == ["edit", "thumbs"]  # the duplicate was not stored twice
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["thumbs"]["rating"] == -1 and by_kind["thumbs"]["comment"] == "too short"
    assert by_kind["edit"]["edited_text"] == edit["edited_text"]  # stored verbatim; rendered inert later
    assert all(r["request_id"] == rid for r in rows)  # each row references the request row
    assert platform_server.rows([rid])[0]["request_id"] == rid


def test_regeneration_by_header_and_by_feedback(platform_server, keys):
    first = _ask(platform_server, keys["user"])
    second = _ask(platform_server, keys["user"], **{"x-keel-regenerate-of": first})
    row = platform_server.rows([second])[0]
    assert row["regenerate_of"] == first  # the gateway linked it from the header

    body = {"request_id": first, "type": "regenerate", "new_request_id": second}
    r = _post(platform_server, keys["user"], "/v1/feedback", json=body)
    assert r.status_code == 201, r.text
    rows = _feedback_rows(platform_server, first)
    assert [(x["kind"], x["other_request_id"]) for x in rows] == [("regenerate", second)]

    missing = {**body, "new_request_id": "chatcmpl-nope"}
    r = _post(platform_server, keys["user"], "/v1/feedback", json=missing)
    assert r.status_code == 404 and r.json()["error"]["param"] == "new_request_id"


def test_annotator_choice(platform_server, keys):
    a, b = _ask(platform_server, keys["user"]), _ask(platform_server, keys["other"])
    choice = {"request_id": a, "type": "choice", "other_request_id": b, "preferred": "other"}
    # a plain user key may not judge other people's answers
    r = _post(platform_server, keys["user"], "/v1/feedback", json=choice)
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    r = _post(platform_server, keys["annotator"], "/v1/feedback", json=choice)
    assert r.status_code == 201, r.text
    rows = _feedback_rows(platform_server, a)
    assert [(x["kind"], x["other_request_id"], x["preferred"]) for x in rows] == [("choice", b, "other")]


def test_errors(platform_server, keys, api_key):
    rid = _ask(platform_server, keys["user"])
    cases = [
        # (key, body, status, param)
        (
            keys["user"],
            {"request_id": "chatcmpl-unknown", "type": "thumbs", "rating": "up"},
            404,
            "request_id",
        ),
        (keys["other"], {"request_id": rid, "type": "thumbs", "rating": "up"}, 403, "request_id"),
        (keys["user"], {"request_id": rid, "type": "thumbs", "rating": "meh"}, 400, "rating"),
        (keys["user"], {"request_id": rid, "type": "like"}, 400, "type"),
        (keys["user"], {"request_id": rid, "type": "edit", "edited_text": ""}, 400, "edited_text"),
        (keys["user"], {"request_id": rid, "type": "thumbs", "rating": "up", "extra": 1}, 400, "extra"),
        (keys["user"], {"type": "thumbs", "rating": "up"}, 400, "request_id"),
    ]
    for key, body, status, param in cases:
        r = _post(platform_server, key, "/v1/feedback", json=body)
        assert r.status_code == status, (body, r.text)
        err = r.json()["error"]
        assert err["param"] == param and err["message"], (body, err)
    r = _post(platform_server, keys["user"], "/v1/feedback", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(f"{platform_server.url}/v1/feedback", json={"request_id": rid}, timeout=30)
    assert r.status_code == 401
    assert _feedback_rows(platform_server, rid) == []  # nothing was stored by any bad request
