"""A missing browser or shared-data folder skips on a laptop and fails in CI (CI=true)."""

from __future__ import annotations

import pytest

from tests import browser
from tests.prereq import missing


@pytest.mark.parametrize("ci", ["true", "1", "TRUE"])
def test_in_ci_a_missing_prerequisite_fails(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="no chromium.*CI=true"):
        missing("no chromium")


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_outside_ci_it_skips(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        missing("no chromium")


def test_a_missing_chromium_fails_the_browser_tests_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "chromium"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        browser.require_chromium()
