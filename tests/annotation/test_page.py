"""The annotation page in a real browser (Debian chromium via Playwright) on a platform of its own that
borrows the session engine: candidates are generated, a user edit is mined, two annotators review with
the keyboard, decisions land in DuckDB, and the reviewed pairs export as a TRL snapshot."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.browser import launch
from tests.harness import PlatformProcess, borrowed_engine

pytestmark = pytest.mark.slow

XSS = "Say hi. <script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'> **bold**"


@pytest.fixture(scope="module")
def annotate_platform(platform_server, base_model_dir, tmp_path_factory):
    urls = platform_server.engine_urls()
    # the borrowed engine may be busy with another test: wait for one answer straight from it
    # (not through the platform, whose sampler would turn the warm-up into a pair)
    body = {"model": "keel", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.post(f"{urls[0]}/v1/chat/completions", json=body, timeout=120).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"engine {urls[0]} does not answer"
        time.sleep(2)
    overrides = [
        borrowed_engine(platform_server),
        "annotation.candidate_rate=1.0",
        "annotation.candidate_interval_s=0.3",
        "annotation.candidate_max_tokens=16",
        "annotation.double_annotate_fraction=0",
        # the page is under test, not routing: the router would (rightly) refuse "Name a colour." as out of
        # scope, and a canned refusal gets no candidate answer
        "router.enabled=false",
    ]
    p = PlatformProcess(
        data_dir=tmp_path_factory.mktemp("annotate") / "data", model_dir=base_model_dir, overrides=overrides
    ).start()
    yield p
    p.stop()


def _pending(p) -> list[dict]:
    r = p.admin("GET", "/admin/flywheel/pairs", params={"status": "pending"})
    r.raise_for_status()
    return r.json()


def _seed(p) -> dict:
    user = p.create_key("page-user")
    h = {"Authorization": f"Bearer {user}"}
    ids = []
    for text in (XSS, "Name a colour.", "Name an animal."):
        body = {"model": "keel", "messages": [{"role": "user", "content": text}], "max_tokens": 16}
        r = httpx.post(f"{p.url}/v1/chat/completions", json=body, headers=h, timeout=120)
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-request-id"])
    fb = {"request_id": ids[1], "type": "edit", "edited_text": "**Blue**, the colour of the sky."}
    assert httpx.post(f"{p.url}/v1/feedback", json=fb, headers=h, timeout=30).status_code == 201
    deadline = time.monotonic() + 120
    while len([x for x in _pending(p) if x["source"] == "candidate"]) < 3:
        assert time.monotonic() < deadline, "the sampler made no candidates"
        time.sleep(0.5)
    mined = p.admin("POST", "/admin/flywheel/mine", json={}).json()
    assert mined["stats"]["pairs_edit"] == 1
    return {"ids": ids}


def _login(browser, url: str, key: str):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.goto(f"{url}/annotate")
    page.fill("#key", key)
    page.click("#login")
    page.wait_for_selector("#answer-a")
    return page


def _pair_id(page, previous: str | None = None) -> str:
    page.wait_for_function(
        "prev => { const el = document.getElementById('item'); return el.dataset.pairId !== prev; }",
        arg=previous if previous is not None else "",
    )
    return page.eval_on_selector("#item", "el => el.dataset.pairId")


def test_review_in_browser(annotate_platform, artifacts_dir: Path):
    from playwright.sync_api import sync_playwright

    p = annotate_platform
    _seed(p)
    pending = {x["pair_id"]: x for x in _pending(p)}
    assert len(pending) == 4
    k1, k2 = p.create_key("ann-one", "annotator"), p.create_key("ann-two", "annotator")
    user_key = p.create_key("not-annotator")

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            # a plain user key cannot log in
            ctx = browser.new_context()
            page = ctx.new_page()
            page.goto(f"{p.url}/annotate")
            page.fill("#key", user_key)
            page.click("#login")
            assert "not an active annotator key" in page.inner_text("#login-error")
            ctx.close()

            xss_pid = next(pid for pid, x in pending.items() if x["prompt"][0]["content"] == XSS)
            inert_checked: set[str] = set()

            def check(page, pid: str) -> str:
                if pid == xss_pid:  # Markdown rendered, HTML shown as text and never run
                    assert "<script>" in page.inner_text("#prompt")
                    assert page.locator("#prompt strong").count() == 1
                    assert page.locator("#prompt script, #prompt img").count() == 0
                    inert_checked.add(pid)
                return pid

            one, two = _login(browser, p.url, k1), _login(browser, p.url, k2)
            a1, b1 = check(one, _pair_id(one)), check(two, _pair_id(two))
            assert a1 and b1 and a1 != b1  # two sessions never hold the same item

            seen = {a1}
            one.keyboard.press("a")  # A is better
            cur = check(one, _pair_id(one, a1))
            assert cur not in (a1, b1)
            seen.add(cur)
            one.keyboard.press("s")  # B is better
            cur2 = check(one, _pair_id(one, cur))
            assert cur2 not in seen | {b1}
            one.keyboard.press("e")  # edit A, save with Ctrl+Enter
            one.wait_for_selector("#edit-text", state="visible")
            one.fill("#edit-text", "Edited <b>answer</b> by ann-one.")
            one.keyboard.press("Control+Enter")
            one.wait_for_selector("#empty", state="visible")  # the last free item is leased by ann-two

            two.screenshot(path=str(artifacts_dir / "annotation-page.png"), full_page=True)
            for page in (one, two):
                assert page.evaluate("window.__pwned === undefined")
            assert xss_pid in inert_checked  # the page showing it rendered it inert
            two.keyboard.press("r")  # both bad
            two.wait_for_selector("#empty", state="visible")
            two.wait_for_function("document.getElementById('counts').textContent.startsWith('4 reviewed')")
        finally:
            browser.close()

    anns = p.admin("GET", "/admin/flywheel/annotations").json()
    got = sorted((a["pair_id"], a["annotator"], a["decision"]) for a in anns)
    assert got == sorted(
        [
            (a1, "ann-one", "accept"),
            (cur, "ann-one", "swap"),
            (cur2, "ann-one", "edit"),
            (b1, "ann-two", "reject"),
        ]
    )
    assert (
        next(a for a in anns if a["decision"] == "edit")["edited_text"] == "Edited <b>answer</b> by ann-one."
    )
    assert all(a["created_at"] for a in anns)
    status = {x["pair_id"]: x for x in p.admin("GET", "/admin/flywheel/pairs").json()}
    assert status[b1]["status"] == "rejected" and status[a1]["status"] == "accepted"
    assert status[cur]["final_chosen"] == pending[cur]["rejected"]  # swapped
    assert status[cur2]["final_chosen"] == "Edited <b>answer</b> by ann-one."

    out = p.admin("POST", "/admin/flywheel/export", json={"out": "reviewed"}).json()
    snap = Path(out["path"])
    rows = [json.loads(x) for x in (snap / "dpo" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == out["pairs"] == 3
    assert {r["chosen"][0]["content"] for r in rows} >= {"Edited <b>answer</b> by ann-one."}
    meta = json.loads((snap / "snapshot.json").read_text())
    assert meta["hash"] == out["hash"] and len(out["hash"]) == 64


def test_late_decision_is_refused(annotate_platform):
    p = annotate_platform
    key = p.create_key("ann-api", "annotator")
    h = {"Authorization": f"Bearer {key}"}
    r = httpx.post(
        f"{p.url}/annotate/api/decision",
        json={"pair_id": "pair-x", "lease_token": "t", "decision": "accept"},
        headers=h,
        timeout=30,
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "pair_not_found"
    r = httpx.post(
        f"{p.url}/annotate/api/decision",
        json={"pair_id": "pair-x", "lease_token": "t", "decision": "maybe"},
        headers=h,
        timeout=30,
    )
    assert r.status_code == 400
    assert httpx.get(f"{p.url}/annotate/api/next", timeout=30).status_code == 401
