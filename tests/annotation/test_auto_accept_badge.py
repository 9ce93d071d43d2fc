"""The annotation page shows which pairs the trust policy let into training without review, in a real
browser (Debian chromium via Playwright) on the real app over a real Platform (no engine). Pairs that wait
for a review come first; a reviewer's decision on a trusted pair is an ordinary review (and wins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import launch, logged_in_page
from tests.flywheel.planted import request, review_pair
from tests.harness import engineless_platform, serve_app


@pytest.fixture
def served(tmp_path, restore_umask):
    from keel.app import create_app

    platform = engineless_platform(tmp_path / "data")
    con = platform.db.cursor()
    request(con, "req-edit", "key-user", "Who develops TiDB?", "Nobody knows.", 1, route="chat")
    request(con, "req-up", "key-user", "What is PD?", "PD schedules.", 2, route="chat")
    # an edit pair the policy trusted (mined first), and a thumbs pair that waits for review
    review_pair(con, "pair-edit", "req-edit", "Who develops TiDB?", "chat", "edit", 0, auto="edit")
    review_pair(con, "pair-thumbs", "req-up", "Who develops TiDB?", "chat", "thumbs", 1)
    # the app's lifespan shutdown closes the platform (and its database)
    with serve_app(create_app(platform)) as port:
        yield platform, f"http://127.0.0.1:{port}"


def test_auto_accepted_pairs_carry_a_badge_and_come_after_waiting_ones(served, artifacts_dir: Path):
    from playwright.sync_api import sync_playwright

    platform, url = served
    _, key = platform.keys.create("ann-trust", "annotator")
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = logged_in_page(browser, f"{url}/annotate", key)
            # the pair that waits for a review comes first, though it was mined later; no badge
            page.wait_for_function("() => document.getElementById('item').dataset.pairId === 'pair-thumbs'")
            assert not page.is_visible("#m-auto")
            page.keyboard.press("k")  # skip
            page.wait_for_function("() => document.getElementById('item').dataset.pairId === 'pair-edit'")
            assert page.is_visible("#m-auto") and page.inner_text("#m-auto") == "auto-accepted (edit)"
            page.screenshot(path=str(artifacts_dir / "annotation-auto-accepted.png"), full_page=True)
            page.keyboard.press("r")  # reject: the review wins over the policy
            page.wait_for_function("() => document.getElementById('empty').style.display === 'block'")
        finally:
            browser.close()
    status = dict(platform.db.fetchall("SELECT pair_id, status FROM pairs"))
    assert status["pair-edit"] == "rejected" and status["pair-thumbs"] == "pending"
