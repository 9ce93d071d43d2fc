"""One admin rule on every admin surface: 401 for a missing, unknown or revoked key, 403 for a valid key
that is not an admin's, through. The admin API (/admin/...), /metrics, and the console's API and reports
(/console/api/..., /console/report/...), on the real app over a real Platform (DuckDB, key store), no engine.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute


@pytest.fixture(scope="module")
def surface(engineless_app):
    platform, app, client = engineless_app
    keys = {role: platform.keys.create(f"k-{role}", role)[1] for role in ("user", "annotator", "admin")}
    revoked_info, revoked = platform.keys.create("k-gone", "admin")
    platform.keys.revoke(revoked_info.key_id)
    keys |= {
        "revoked": revoked,
        "unknown": "sk-keel-not-a-key",
        "nonascii": "sk-ké\u00ff",
        "root": platform.admin_key,
    }
    return app, client, keys


def admin_surface(app) -> list[tuple[str, str]]:
    """(method, path) of every route that needs an admin: /admin/..., /metrics, /console/api|report/..."""
    out = []
    for r in app.routes:
        if not isinstance(r, APIRoute):
            continue
        if not (r.path.startswith(("/admin", "/console/api", "/console/report")) or r.path == "/metrics"):
            continue
        for m in sorted(r.methods - {"HEAD", "OPTIONS"}):
            out.append((m, re.sub(r"\{[^}]+\}", "x", r.path)))
    return out


def _misanswered(surface, who, answered, methods=None) -> str:
    """One line per admin route (of ``methods``; None: all) whose answer to ``who``'s key fails ``answered``."""
    app, client, keys = surface
    # bytes: a header is latin-1 on the wire, and a non-ASCII key must be a 401 too, not a crash
    key = keys.get(who)
    headers = {"Authorization": f"Bearer {key}".encode("latin-1")} if key is not None else {}
    wrong = []
    for method, path in admin_surface(app):
        if methods and method not in methods:
            continue
        # no body: the auth dependency answers before any work or validation
        r = client.request(method, path, headers=headers)
        if not answered(r):
            wrong.append(f"{method} {path} → {r.status_code} {r.text[:100]}")
    return "\n".join(wrong)


def test_the_surface_is_all_there(surface):
    app, _, _ = surface
    paths = {p for _, p in admin_surface(app)}
    assert "/metrics" in paths and "/console/api/overview" in paths and "/console/api/promote" in paths
    assert "/admin/backup" in paths and "/admin/cycles" in paths and len(paths) >= 30


@pytest.mark.parametrize("who", [None, "unknown", "revoked", "nonascii"])
def test_a_missing_or_unknown_key_is_a_401_everywhere(surface, who):
    wrong = _misanswered(
        surface, who, lambda r: r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    )
    assert not wrong, wrong


@pytest.mark.parametrize("role", ["user", "annotator"])
def test_a_valid_key_that_is_not_an_admins_is_a_403_everywhere(surface, role):
    wrong = _misanswered(
        surface, role, lambda r: r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    )
    assert not wrong, wrong


@pytest.mark.parametrize("who", ["admin", "root"])
def test_an_admin_key_gets_through_everywhere(surface, who):
    # GET only: a POST with a valid key could start real work; its 401/403 are above
    wrong = _misanswered(
        surface,
        who,
        lambda r: r.status_code not in (401, 403) and (r.status_code < 500 or r.status_code == 503),
        ("GET",),
    )
    assert not wrong, wrong


def test_console_login_follows_the_same_rule(surface):
    _, client, keys = surface
    assert client.post("/console/login", data={"key": keys["unknown"]}).status_code == 401
    assert client.post("/console/login", data={"key": ""}).status_code == 401
    assert client.post("/console/login", data={"key": keys["user"]}).status_code == 403
    ok = client.post("/console/login", data={"key": keys["admin"]}, follow_redirects=False)
    assert ok.status_code == 303 and "keel_console" in ok.cookies


def test_each_error_class_declares_its_status_and_the_one_handler_answers_it(surface):
    """Routes no longer translate errors: a registry, key, lineage or cycle miss is a 404 in OpenAI's
    shape because its class says so (flywheel's UnknownCycle reaches keel's handler by its base's type)."""
    _, client, keys = surface
    h = {"Authorization": f"Bearer {keys['root']}"}
    for path in [
        "/admin/checkpoints/nope",
        "/admin/flywheel/lineage/versions/nope",
        "/admin/flywheel/lineage/requests/nope",
        "/admin/cycles/nope",
    ]:
        r = client.get(path, headers=h)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
    r = client.post("/admin/keys/nope/revoke", headers=h)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = client.post("/admin/keys", headers=h, json={"name": "x", "role": "wizard"})
    assert r.status_code == 400 and "unknown role" in r.json()["error"]["message"]
    r = client.post("/admin/promote", headers=h, json={"version": "nope"})
    assert r.status_code in (404, 409) and r.json()["error"]["message"]
