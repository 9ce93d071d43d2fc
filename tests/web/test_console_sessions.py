"""Console sessions end with their key: revoking an admin key (or taking its admin role) logs it out of
the console at once, like the annotation page; the platform's own admin key keeps working."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from keel.app import install_error_handlers
from keel.config import load_settings
from keel.store.db import Database
from keel.store.keys import KeyStore
from keel.web.console import COOKIE
from keel.web.console import router as console_router


class _Platform:
    """The parts of the platform the console's login and sessions read (real key store, real database)."""

    def __init__(self, tmp_path):
        self.settings = load_settings(overrides=[f"data_dir={tmp_path}"])
        self.db = Database(tmp_path / "keel.duckdb")
        self.keys = KeyStore(self.db)
        self.admin_key = "sk-keel-admin-test"


def _client(platform) -> TestClient:
    app = FastAPI()
    app.state.platform = platform
    install_error_handlers(app)
    app.include_router(console_router)
    return TestClient(app)


def _logged_in(client: TestClient, key: str) -> bool:
    r = client.post("/console/login", data={"key": key}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return COOKIE in client.cookies


def test_revoking_an_admin_key_ends_its_console_session(tmp_path):
    p = _Platform(tmp_path)
    info, secret = p.keys.create("ops", "admin")
    client = _client(p)
    assert _logged_in(client, secret)
    assert 'id="login"' not in client.get("/console").text  # the console itself, not the login form
    p.keys.revoke(info.key_id)
    page = client.get("/console")
    assert page.status_code == 200 and "Admin key" in page.text  # back at the login form
    # the platform's own admin key has no key-store row and stays valid
    other = _client(p)
    assert _logged_in(other, p.admin_key)
    assert "Admin key" not in other.get("/console").text
    p.db.close()


def test_sessions_expire(tmp_path, monkeypatch):
    p = _Platform(tmp_path)
    _info, secret = p.keys.create("ops", "admin")
    client = _client(p)
    assert _logged_in(client, secret)
    import keel.web.sessions as sessions

    later = sessions.time.monotonic() + p.settings.annotation.session_ttl_s + 1
    monkeypatch.setattr(sessions.time, "monotonic", lambda: later)
    assert "Admin key" in client.get("/console").text
    p.db.close()
