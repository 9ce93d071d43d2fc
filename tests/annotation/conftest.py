"""The annotation page's tests on the real app over an engine-less Platform (DuckDB, key store)."""

from __future__ import annotations

import pytest

from tests.flywheel.planted import review_items
from tests.harness import engineless_platform, serving


@pytest.fixture
def served(request, tmp_path, restore_umask):
    """(platform, URL): the platform served, its review queue holding the test module's REVIEW_ITEMS
    (planted.review_items rows: each a logged request and the pair mined from it)."""
    platform = engineless_platform(tmp_path / "data")
    review_items(platform.db.cursor(), request.module.REVIEW_ITEMS)
    with serving(platform) as url:
        yield platform, url


@pytest.fixture
def annotator_page(served):
    """(key info, page): an annotator's key, and the annotation page logged in with it in a Chromium of its
    own (closed after the test)."""
    from tests.browser import browser_page

    platform, url = served
    info, key = platform.keys.create("annotator", "annotator")
    with browser_page(f"{url}/annotate", key) as page:
        yield info, page
