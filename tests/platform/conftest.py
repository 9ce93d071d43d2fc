"""The real app over an engine-less Platform (DuckDB, key store, registry), shared by a test module."""

from __future__ import annotations

import pytest

from tests.harness import engineless_platform


@pytest.fixture(scope="module")
def engineless_app(tmp_path_factory):
    """(platform, app, TestClient inside the app's lifespan); a 5xx comes back as a response, not raised."""
    from fastapi.testclient import TestClient
    from keel.app import create_app

    platform = engineless_platform(tmp_path_factory.mktemp("app"))
    app = create_app(platform)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield platform, app, client
