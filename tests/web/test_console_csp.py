"""The console works under its Content-Security-Policy: in a real Chromium, the login page and the console
(its script from /static, its charts, its JSON calls) run with no CSP violation, and the page cannot be
framed. An engine-less platform (DuckDB, keys, registry) served by uvicorn: what the console's own code
does under the policy is what is tested, not the engines (tests/web/test_console.py covers those)."""

from __future__ import annotations

import time

import pytest

from tests.browser import launch
from tests.harness import engineless_platform, serving


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    platform = engineless_platform(tmp_path_factory.mktemp("csp"))
    with serving(platform) as url:
        yield url, platform.admin_key


def test_the_console_runs_under_its_csp_and_cannot_be_framed(served):
    from playwright.sync_api import sync_playwright

    url, admin_key = served
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            violations: list[str] = []
            page.on(
                "console",
                lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.goto(f"{url}/console")
            page.fill("#key", admin_key)
            page.click("#login")
            for panel in ("p-serving", "p-checkpoints", "p-cycles"):  # drawn by console.js from the JSON API
                page.wait_for_selector(f"#{panel}[data-ready='1']")
            assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0
            assert not violations, violations
            # a page of another origin that frames the console gets nothing drawn
            framer = browser.new_page()
            frame_errors: list[str] = []
            framer.on("console", lambda m: frame_errors.append(m.text))
            framer.set_content(f'<iframe id="f" src="{url}/console"></iframe>')
            time.sleep(2)
            inner = framer.frames[-1]
            assert inner.url in ("about:blank", "") or not inner.query_selector("#key")
            assert any("frame-ancestors" in e for e in frame_errors), frame_errors
        finally:
            browser.close()
