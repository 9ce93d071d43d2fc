"""Sessions end with their key, data stays owner-only, the schema is not public, the review page loads
nothing from other hosts (issue 16 C and the lesser findings). The real app over a real Platform
(DuckDB, key store), no engine: none of this needs a model."""

from __future__ import annotations

import os
import stat
import time

import duckdb
from fastapi.testclient import TestClient

from tests.harness import engineless_platform


def make_app(data_dir, *overrides: str):
    from keel.app import create_app

    platform = engineless_platform(data_dir, *overrides)
    return platform, create_app(platform)


def login(client: TestClient, key: str) -> None:
    r = client.post("/annotate/login", data={"key": key}, follow_redirects=False)
    assert r.status_code == 303 and "keel_annotate" in r.cookies


def test_revoking_a_key_ends_its_page_session_at_once(tmp_path, restore_umask):
    platform, app = make_app(tmp_path / "data")
    with TestClient(app) as client:
        _, secret = platform.keys.create("ann", role="annotator")
        login(client, secret)
        assert client.get("/annotate/api/next").status_code == 200
        admin = {"Authorization": f"Bearer {platform.admin_key}"}
        assert client.post("/admin/keys/ann/revoke", headers=admin).status_code == 200
        r = client.get("/annotate/api/next")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert "login" in client.get("/annotate").text.lower()  # the page asks for a key again


def test_page_sessions_expire(tmp_path, restore_umask):
    platform, app = make_app(tmp_path / "data", "annotation.session_ttl_s=1")
    with TestClient(app) as client:
        _, secret = platform.keys.create("ann", role="annotator")
        login(client, secret)
        assert client.get("/annotate/api/next").status_code == 200
        time.sleep(1.2)
        assert client.get("/annotate/api/next").status_code == 401


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_data_dir_is_owner_only_and_old_files_are_tightened(tmp_path, restore_umask):
    data = tmp_path / "data"
    os.umask(0o022)  # a data dir made by an earlier Keel: 0755 folders, a 0644 database with prompts
    (data / "journal").mkdir(parents=True)
    duckdb.connect(str(data / "keel.duckdb")).close()
    (data / "journal" / "seg-1.jsonl").write_text("{}\n")
    assert mode(data / "keel.duckdb") & 0o044 and mode(data / "journal") & 0o055
    platform, app = make_app(data)
    with TestClient(app):
        pass
    for p in [data, *data.rglob("*")]:
        if p.is_symlink():
            continue
        assert mode(p) & 0o077 == 0, f"{p} is {oct(mode(p))}"
    # and what is created from now on (run/, logs/, the database's own files) is owner-only too
    assert mode(data / "run") == 0o700 and mode(data / "run" / "admin.key") == 0o600
    new = data / "journal" / "new.jsonl"
    new.write_text("x")
    assert mode(new) == 0o600


def test_openapi_and_docs_are_not_served(tmp_path, restore_umask):
    platform, app = make_app(tmp_path / "data")
    with TestClient(app) as client:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert client.get(path).status_code == 404, path
            r = client.get(path, headers={"Authorization": f"Bearer {platform.admin_key}"})
            assert r.status_code == 404 and "paths" not in r.text, path


def test_review_page_sends_a_csp_and_shows_images_as_links(tmp_path, restore_umask):
    from keel.web.annotation import render_markdown

    html = render_markdown(
        "look ![tracker](http://evil.example/pixel.png?u=1) and <img src=x onerror=alert(1)>"
    )
    assert "<img" not in html
    assert '<a href="http://evil.example/pixel.png?u=1" rel="noopener noreferrer nofollow"' in html
    assert "[image: tracker]" in html
    platform, app = make_app(tmp_path / "data")
    with TestClient(app) as client:
        _, secret = platform.keys.create("ann", role="annotator")
        for page in ("login", "review"):
            if page == "review":
                login(client, secret)
            r = client.get("/annotate")
            policy = r.headers["content-security-policy"]
            directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
            assert directives["img-src"] == "'self' data:" and directives["default-src"] == "'self'"
            assert "http" not in directives["script-src"] and "unsafe-inline" not in directives["script-src"]
            nonce = directives["script-src"].split("'nonce-")[1].rstrip("'")
            # every script on the page carries the nonce, so the policy lets exactly those run
            assert r.text.count("<script") == r.text.count(f'nonce="{nonce}"')
