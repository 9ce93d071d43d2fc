"""The report renders: open it in headless Chromium, check the gate table, save a screenshot."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.browser import launch, require_chromium
from tests.eval.test_gates import BASE, BASE_CORRECT, BASE_DOM, BASE_GEN, BASE_P, POLICY, fake_eval
from training.eval.gates import compare, decide
from training.eval.report import write_report


def with_summaries(ev: dict, acc_shift: float) -> dict:
    """Add the summary blocks the report draws (categories, letter shares, perplexity parts)."""
    ev = dict(ev)
    for bench, cats in (("mmlu", ["STEM", "humanities"]), ("cmmlu", ["STEM", "China specific"])):
        ev[bench] = {
            **ev[bench],
            "summary": {
                "categories": {
                    c: {"n": 200, "acc": 0.27 + k * 0.02 + acc_shift, "score": 0.26 + acc_shift}
                    for k, c in enumerate(cats)
                },
                "pred_letter_share": {"A": 0.9, "B": 0.05, "C": 0.03, "D": 0.02},
            },
        }
    for part in ("domain", "general"):
        nll = sum(d["nll"] for d in ev[part]["docs"])
        tok = sum(d["tokens"] for d in ev[part]["docs"])
        s = {"ppl": float(np.exp(nll / tok)), "bpb": nll / np.log(2) / (3 * tok), "tokens": tok}
        ev[part] = {**ev[part], "summary": s, "parts": {"all_docs": s}}
    return ev


def test_report_renders_in_chromium(tmp_path, artifacts_dir):
    """Two decisions whose verdicts are known: a 3-point drop of the letter score (FAIL) and a domain gain
    with everything else kept (PASS); the page shows each one's verdict and its failing gate."""
    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    base = with_summaries(BASE, 0.0)
    worse = with_summaries(
        fake_eval("cand-1", BASE_CORRECT, BASE_P - 0.03, BASE_DOM * 0.9, BASE_GEN * 1.01), -0.01
    )
    better = with_summaries(
        fake_eval("cand-2", BASE_CORRECT, BASE_P + 0.002, BASE_DOM * 0.9, BASE_GEN * 1.001), 0.0
    )
    worse["checkpoint"]["path"] = better["checkpoint"]["path"] = base["checkpoint"]["path"] = "/ckpt"
    cases = []
    for name, cand in (("fail", worse), ("pass", better)):
        decision = decide(cand, base, POLICY)
        html, png = write_report(cand, base, compare(cand, base, POLICY), decision, tmp_path / name)
        cases.append((name, decision, html, png))
    assert [d["passed"] for _, d, _, _ in cases] == [False, True]
    failed_gates = {g["gate"] for g in cases[0][1]["gates"] if not g["passed"]}
    assert failed_gates == {"mmlu_score"}, cases[0][1]["reasons"]
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            for name, _decision, html, png in cases:
                assert png.stat().st_size > 10_000
                page.goto(html.as_uri())
                assert page.locator("#verdict").inner_text() == name.upper()
                rows = page.locator("#gates tr")
                assert rows.count() == len(POLICY.gates) + 1
                assert "mmlu_score" in page.locator("#gates").inner_text()
                # The chart image loaded (naturalWidth is 0 for a broken image).
                assert page.locator("#chart").evaluate("img => img.naturalWidth") > 500
                if name == "fail":
                    shot = artifacts_dir / "eval-report.png"
                    page.screenshot(path=str(shot), full_page=True)
                    shutil.copy(png, artifacts_dir / "eval-report-charts.png")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
