"""The annotation page shows which pairs the trust policy let into training without review, in a real
browser (Debian chromium via Playwright) on the real app over a real Platform (no engine). Pairs that wait
for a review come first; a reviewer's decision on a trusted pair is an ordinary review (and wins)."""

from __future__ import annotations

from pathlib import Path

# an edit pair the policy trusted (mined first), and a thumbs pair that waits for review
REVIEW_ITEMS = [
    ("pair-edit", "req-edit", "Who develops TiDB?", "Nobody knows.", "chat", "edit", "edit"),
    ("pair-thumbs", "req-up", "What is PD?", "PD schedules.", "chat", "thumbs", None),
]


def test_auto_accepted_pairs_carry_a_badge_and_come_after_waiting_ones(
    served, annotator_page, artifacts_dir: Path
):
    platform, _ = served
    _, page = annotator_page
    # the pair that waits for a review comes first, though it was mined later; no badge
    page.wait_for_function("() => document.getElementById('item').dataset.pairId === 'pair-thumbs'")
    assert not page.is_visible("#m-auto")
    page.keyboard.press("k")  # skip
    page.wait_for_function("() => document.getElementById('item').dataset.pairId === 'pair-edit'")
    assert page.is_visible("#m-auto") and page.inner_text("#m-auto") == "auto-accepted (edit)"
    page.screenshot(path=str(artifacts_dir / "annotation-auto-accepted.png"), full_page=True)
    page.keyboard.press("r")  # reject: the review wins over the policy
    page.wait_for_function("() => document.getElementById('empty').style.display === 'block'")
    status = dict(platform.db.fetchall("SELECT pair_id, status FROM pairs"))
    assert status["pair-edit"] == "rejected" and status["pair-thumbs"] == "pending"
