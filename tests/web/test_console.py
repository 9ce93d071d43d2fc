"""The console in a real browser (Debian chromium via Playwright) on a real platform with a real engine and
real traffic: user and annotator keys are refused, an admin logs in, every panel fills, user text with
<script> and <img onerror> stays inert, search and filters work, a gate-failed promotion is refused, and a
promotion and a rollback go through from the page. Screenshots land in the test artifacts."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from bench.support.derive import derive_checkpoint
from tests.harness import platform_running

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
XSS = 'Hello <script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> pwned-marker'
XSS_EDIT = '<img src=x onerror="window.__pwned = 3"> a better answer'
DOCS = ["sql-statements/sql-statement-show-engines.md", "sql-statements/sql-statement-flashback-table.md"]
PANELS = [
    "p-serving",
    "p-traffic",
    "p-latency",
    "p-feedback",
    "p-requests",
    "p-cycles",
    "p-checkpoints",
    "p-index",
]


@pytest.fixture(scope="module")
def console_platform(base_model_dir, shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("console")
    docs = root / "docs"
    for rel in DOCS:
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / "domain" / "tidb-docs-zh" / "docs" / rel, docs / rel)
    with platform_running(
        root,
        base_model_dir,
        ["engine.kvcache_gib=1", f"rag.corpus_paths=[{docs}]"],
    ) as p:
        yield p


def _chat(p, key: str, text: str) -> httpx.Response:
    body = {
        "model": "keel",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 16,
        "temperature": 0,
    }
    return httpx.post(
        f"{p.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=300
    )


def _feedback(p, key: str, body: dict) -> None:
    r = httpx.post(f"{p.url}/v1/feedback", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert r.status_code in (200, 201), r.text


def _seed(p) -> dict:
    user = p.create_key("console-user")
    ids = {}
    for name, text in [
        ("xss", XSS),
        ("zh", "TiDB 的 FLASHBACK TABLE 语句有什么用？"),
        ("engines", "SHOW ENGINES 显示什么？"),
        ("hi", "Hi! How are you?"),
        ("colour", "Name a colour."),
        ("again", "Name a colour."),
    ]:
        r = _chat(p, user, text)
        assert r.status_code == 200, r.text
        ids[name] = r.headers["x-request-id"]
    bad = httpx.post(
        f"{p.url}/v1/chat/completions",
        json={"model": "keel", "messages": []},
        headers={"Authorization": f"Bearer {user}"},
    )
    assert bad.status_code == 400
    _feedback(
        p, user, {"request_id": ids["xss"], "type": "thumbs", "rating": "down", "comment": "<b>bad</b>"}
    )
    _feedback(p, user, {"request_id": ids["zh"], "type": "thumbs", "rating": "up"})
    _feedback(p, user, {"request_id": ids["hi"], "type": "edit", "edited_text": XSS_EDIT})
    _feedback(p, user, {"request_id": ids["colour"], "type": "regenerate", "new_request_id": ids["again"]})
    reviewer = p.create_key("console-reviewer", "annotator")  # choice feedback is a reviewer's
    _feedback(
        p,
        reviewer,
        {
            "request_id": ids["again"],
            "type": "choice",
            "other_request_id": ids["colour"],
            "preferred": "this",
        },
    )
    return ids


def _checkpoints(p, base_model_dir: Path) -> None:
    root: Path = p.root
    v2 = derive_checkpoint(base_model_dir, root / "v2", "v2", scale=1.05)
    p.cli("checkpoints", "add", str(v2))
    # v3: a gate decision that failed, recorded through the same route `keel eval gate` uses
    v3 = derive_checkpoint(base_model_dir, root / "v3", "v3", scale=0.97)
    gate_dir = v3 / "eval" / "gate-0shot-vs-base"
    gate_dir.mkdir(parents=True)
    decision = {
        "passed": False,
        "baseline": {"version": "base"},
        "reasons": ["cmmlu accuracy fell 4.1 points"],
    }
    (gate_dir / "decision.json").write_text(json.dumps(decision))
    (gate_dir / "report.html").write_text("<h1>gate report</h1><script>window.__pwned = 4</script>")
    manifest = json.loads((v3 / "manifest.json").read_text())
    manifest["parent"] = "v2"
    manifest["eval"] = {"gate": {"passed": False, "decision": str(gate_dir / "decision.json")}}
    (v3 / "manifest.json").write_text(json.dumps(manifest))
    p.cli("checkpoints", "add", str(v3))
    r = p.admin(
        "POST",
        "/admin/evals",
        json={"kind": "gate", "checkpoint": str(v3), "path": str(gate_dir / "decision.json")},
    )
    assert r.status_code == 200, r.text


def _login(browser, url: str, key: str):
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
    ctx.set_default_timeout(180_000)  # a loaded 2-core host: the first page load can take a while
    page = ctx.new_page()
    page.goto(f"{url}/console")
    page.fill("#key", key)
    page.click("#login")
    return page


def _confirm(page, button: str, expect: str) -> None:
    page.click(button)
    page.wait_for_selector("#confirm[open]")
    assert expect in page.inner_text("#confirm-text")
    page.click("#confirm-yes")


def test_console_in_browser(console_platform, base_model_dir, artifacts_dir: Path):
    from playwright.sync_api import sync_playwright

    p = console_platform
    t_start = time.monotonic()
    ids = _seed(p)
    _checkpoints(p, base_model_dir)
    cycle = p.cli("cycle", "run", "--dry-run", "--json", check=False)  # mine + snapshots, no training
    assert "cycle_id" in cycle.stdout, cycle.stderr[-2000:]
    annotator = p.create_key("console-annotator", "annotator")
    user = p.create_key("console-plain", "user")

    print(f"seeded (traffic, checkpoints, a dry-run cycle) in {time.monotonic() - t_start:.0f} s", flush=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for key in (user, annotator):  # non-admin keys: 403 and the login form again
                page = _login(browser, p.url, key)
                assert "not an admin key" in page.inner_text("#login-error")
                page.context.close()
            r = httpx.get(f"{p.url}/console/api/overview", headers={"Authorization": f"Bearer {annotator}"})
            assert r.status_code == 403
            assert httpx.get(f"{p.url}/console/api/overview").status_code == 401

            page = _login(browser, p.url, p.admin_key)
            for panel in PANELS:
                page.wait_for_selector(f"#{panel}[data-ready='1']", timeout=60_000)
            assert page.inner_text("#serving-version") == "base"
            # user strings are text: the literal markup is visible, nothing ran, no element was made from it
            page.wait_for_selector(f"tr[data-request-id='{ids['xss']}']")
            assert "<script>window.__pwned = 1</script>" in page.inner_text("#requests")
            assert page.locator("#requests script, #requests img, #p-feedback img").count() == 0
            assert page.evaluate("window.__pwned === undefined")
            # every panel has real content
            assert page.locator("#chart-routes rect").count() > 0
            assert page.locator("#chart-versions rect").count() > 0
            assert page.locator("#chart-latency circle").count() > 0
            assert page.locator("#feedback tbody tr[data-version='base']").count() == 1
            assert "v3" in page.inner_text("#lineage") and "gate FAILED" in page.inner_text("#lineage")
            assert (
                page.locator("#lineage li[data-version='v2'] li[data-version='v3']").count() == 1
            )  # v3's parent
            assert "FAIL" in page.inner_text("#gates")
            assert page.locator("#cycles tbody tr").count() >= 1
            assert page.locator("#chart-cycle rect").count() >= 1
            assert "TiDB" in page.inner_text("#requests") or "FLASHBACK" in page.inner_text("#requests")
            idx = page.inner_text("#index-stats")
            assert "chunks (lexical)" in idx
            page.screenshot(path=str(artifacts_dir / "console.png"), full_page=True)

            # search and filters (each wait names what the new rows must be, not just a count); every wait is a
            # function: a bare expression is evaluated as a string, which the console's CSP (no unsafe-eval) blocks
            rows_js = "[...document.querySelectorAll('#requests tr.req')]"
            page.fill("#f-q", "pwned-marker")
            page.click("#request-filters button")
            page.wait_for_function(
                f"id => {rows_js}.length === 1 && {rows_js}[0].dataset.requestId === id", arg=ids["xss"]
            )
            page.fill("#f-q", "")
            page.select_option("#f-status", "error")
            page.click("#request-filters button")
            page.wait_for_function(
                f"() => {rows_js}.length >= 1 && {rows_js}.every(r => r.children[3].textContent === '400')"
            )
            page.select_option("#f-status", "")
            page.select_option("#f-feedback", "edit")
            page.click("#request-filters button")
            page.wait_for_function(
                f"id => {rows_js}.length === 1 && {rows_js}[0].dataset.requestId === id", arg=ids["hi"]
            )
            page.select_option("#f-feedback", "")
            page.click("#request-filters button")
            page.wait_for_function(f"() => {rows_js}.length >= 7")

            # a cancelled confirmation changes nothing
            page.select_option("#promote-version", "v2")
            page.click("#promote")
            page.wait_for_selector("#confirm[open]")
            page.click("#confirm-no")
            assert page.inner_text("#serving-version") == "base"

            # the same refusal as the CLI: a failed gate without force
            page.select_option("#promote-version", "v3")
            _confirm(page, "#promote", "Promote v3")
            page.wait_for_selector("#action-status.err")
            assert "failed its gates" in page.inner_text("#action-status")
            assert page.inner_text("#serving-version") == "base"

            # promote v2, then roll back, from the page
            page.select_option("#promote-version", "v2")
            page.fill("#promote-reason", "from the console <i>test</i>")
            _confirm(page, "#promote", "Promote v2")
            page.wait_for_selector("#action-status.done", timeout=600_000)
            assert "promoted v2" in page.inner_text("#action-status")
            page.wait_for_function("() => document.getElementById('serving-version').textContent === 'v2'")
            page.screenshot(path=str(artifacts_dir / "console-promoted.png"), full_page=True)
            _confirm(page, "#rollback", "Roll back from v2")
            page.wait_for_function(
                "() => document.getElementById('action-status').textContent.startsWith('rolled back to base')",
                timeout=600_000,
            )
            page.wait_for_function("() => document.getElementById('serving-version').textContent === 'base'")
            assert "from the console <i>test</i>" in page.inner_text("#swaps")
            assert page.evaluate("window.__pwned === undefined")
            page.screenshot(path=str(artifacts_dir / "console-rolled-back.png"), full_page=True)
        except Exception:
            print(p.log_tail(60), flush=True)  # CI shows nothing else of the platform
            raise
        finally:
            browser.close()

    history = json.loads(p.cli("checkpoints", "history", "--json").stdout)
    assert [(h["kind"], h["to_version"], h["status"], h["by_whom"]) for h in history[:2]] == [
        ("rollback", "base", "succeeded", "admin"),
        ("promote", "v2", "succeeded", "admin"),
    ]
    assert httpx.get(f"{p.url}/health").json()["checkpoint_version"] == "base"
    # the sandboxed gate report: served, but its script cannot run with the console's origin
    r = httpx.get(
        f"{p.url}/console/report/gate/v3/gate-0shot-vs-base",
        headers={"Authorization": f"Bearer {p.admin_key}"},
    )
    assert r.status_code == 200 and "sandbox" in r.headers["content-security-policy"]
