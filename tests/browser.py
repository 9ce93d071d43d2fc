"""Debian's Chromium driven by Playwright: the one place that knows how to launch it on these machines.

Never Playwright's own browser download. The background-networking flags matter: without them Chromium
tries Google's hosts at every start, and this machine's closed network refuses each one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.prereq import missing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> None:
    """Skip (with the reason) where Debian's chromium is absent, fail under CI=true; install.sh installs it."""
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} not installed (deploy/install.sh installs it)")


def launch(playwright):
    """A headless Chromium browser from a ``sync_playwright()`` handle."""
    require_chromium()
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def logged_in_page(browser, url: str, key: str):
    """A new 1400×800 page at ``url`` (the annotation page or the console), logged in with ``key``."""
    page = browser.new_context(viewport={"width": 1400, "height": 800}).new_page()
    page.goto(url)
    page.fill("#key", key)
    page.click("#login")
    return page


@contextmanager
def browser_page(url: str, key: str) -> Iterator:
    """A logged-in page (`logged_in_page`) in a Chromium of its own, closed at the end of the block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            yield logged_in_page(browser, url, key)
        finally:
            browser.close()
