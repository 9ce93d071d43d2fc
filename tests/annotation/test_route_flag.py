"""Flagging a wrong route from the annotation page, in a real browser (Debian chromium via Playwright),
on the real app over a real Platform (DuckDB, key store; no engine, nothing here needs a model).

The flag goes through the feedback API's own path (`type: "route"`), lands in DuckDB, and is what the
router's next (gated) refit trains on: `route_flags` → `training_set`.
"""

from __future__ import annotations

from pathlib import Path

import httpx

MISROUTED = "Firebird 数据库怎么备份"
# a request the router sent to the TiDB route, and the review item mined from it
REVIEW_ITEMS = [
    ("pair-fb", "req-fb", MISROUTED, "用 BR 备份 TiDB 集群…", "domain", "edit", None),
    ("pair-hi", "req-hi", "你好", "你好！", "chat", "edit", None),
]


def test_flag_a_wrong_route_in_browser(served, annotator_page, artifacts_dir: Path):
    from serving.router.fit import training_set

    platform, _ = served
    info, page = annotator_page
    page.wait_for_function("() => document.getElementById('item').dataset.pairId === 'pair-fb'")
    assert page.inner_text("#m-route") == "route: domain"
    assert not page.is_visible("#flag-form")  # the control is closed until asked for
    assert page.inner_text("#flag-state") == ""

    page.keyboard.press("w")  # "wrong route?"
    page.wait_for_selector("#flag-intent", state="visible")
    # the route it took is not offered as the correction
    assert page.eval_on_selector("#flag-intent option[value=domain]", "o => o.disabled")
    page.select_option("#flag-intent", "out_of_scope")
    page.click("#flag-send")
    page.wait_for_function(
        "() => document.getElementById('flag-state').textContent === 'flagged → out_of_scope'"
    )
    assert "route flagged" in page.inner_text("#status")
    page.screenshot(path=str(artifacts_dir / "annotation-route-flag.png"), full_page=True)

    # the flag is the server's, not only the page's: a reload shows it on the same (leased) item
    page.reload()
    page.wait_for_function("() => document.getElementById('item').dataset.pairId === 'pair-fb'")
    page.wait_for_function(
        "() => document.getElementById('flag-state').textContent === 'flagged → out_of_scope'"
    )

    rows = platform.db.fetchall("SELECT request_id, key_id, kind, intent FROM feedback ORDER BY created_at")
    assert rows == [("req-fb", info.key_id, "route", "out_of_scope")]

    from keel.store.router_flags import route_flags

    flags = route_flags(platform.db)
    assert [(f["text"], f["intent"], f["routed"]) for f in flags] == [(MISROUTED, "out_of_scope", "domain")]
    # what `keel router train` and the cycle's router step fit on (run_router_fit passes exactly this)
    data = training_set(flagged=[(f["text"], f["intent"]) for f in flags])
    assert data.sources["flagged"] == 1
    assert data.labels[data.texts.index(MISROUTED)] == "out_of_scope"


def test_route_flag_api_is_the_feedback_path(served):
    platform, url = served
    _, key = platform.keys.create("ann-api", "annotator")
    _, user = platform.keys.create("plain-user")
    h = {"Authorization": f"Bearer {key}"}

    def flag(body, headers=h):
        return httpx.post(f"{url}/annotate/api/route-flag", json=body, headers=headers, timeout=30)

    r = flag({"pair_id": "pair-hi", "intent": "domain"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["type"] == "route" and first["request_id"] == "req-hi" and first["routed"] == "chat"
    again = flag({"pair_id": "pair-hi", "intent": "domain"})  # a double click is one row
    assert again.status_code == 200 and again.json()["id"] == first["id"] and again.json()["duplicate"]
    # the feedback API's validation, in its error shape
    bad = flag({"pair_id": "pair-hi", "intent": "weather"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "intent"
    missing = flag({"pair_id": "pair-nope", "intent": "chat"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "pair_not_found"
    assert (
        flag({"pair_id": "pair-hi", "intent": "chat"}, {"Authorization": f"Bearer {user}"}).status_code == 401
    )
    n = platform.db.fetchall("SELECT count(*) FROM feedback WHERE kind = 'route'")[0][0]
    assert n == 1
