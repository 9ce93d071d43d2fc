"""The console's canary panel and the canary's /metrics series (issue 27): a canary's last look (both arms'
rates, requests per arm, the difference with its interval and the decision) shown in a real Chromium, from a
canary row in a real database; the decision itself is tested in tests/flywheel/test_canary.py."""

from __future__ import annotations

import httpx

from flywheel.canary import CanaryConfig, CanaryTally, decide
from tests.browser import browser_page
from tests.harness import engineless_platform, serving


def _figures() -> dict:
    tally = CanaryTally()
    for i in range(60):
        arm = "candidate" if i % 3 == 0 else "champion"
        row = {"route": "domain", "status_code": 200, "latency_ms": 500.0}
        tally.add(arm, {**row, "completion_text": "" if arm == "candidate" else "an answer"})
    return decide(tally, CanaryConfig(min_requests=10), elapsed_s=30).to_dict()


def test_the_console_shows_the_canary_and_metrics_count_its_arms(tmp_path, artifacts_dir):
    from keel.store import canaries

    platform = engineless_platform(tmp_path)
    figures = _figures()
    assert figures["outcome"] == "stop"
    cid = canaries.start(platform.db, "mute-1", "base", 0.3, "tester", None)
    canaries.finish(platform.db, cid, "rejected", "error_rate 1 vs 0 (always-valid p=1e-09)", figures)
    key = platform.admin_key
    with serving(platform) as url:
        r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 200
        assert 'keel_canary_requests{arm="candidate"} 20.0' in r.text
        assert 'keel_canary_signal{arm="candidate",signal="error_rate"} 1.0' in r.text
        assert "keel_canary_running 0.0" in r.text
        with browser_page(f"{url}/console", key) as page:
            page.set_default_timeout(120_000)
            page.wait_for_selector("#p-canary[data-ready='1']")
            state = page.inner_text("#canary-state")
            assert "mute-1 beside base on 30% of conversations · rejected" in state, state
            bad = page.locator("#canary-signals tr.bad")
            assert bad.count() == 1 and "error_rate" in bad.inner_text() and "worse" in bad.inner_text()
            page.locator("#p-canary").screenshot(path=str(artifacts_dir / "console-canary.png"))
