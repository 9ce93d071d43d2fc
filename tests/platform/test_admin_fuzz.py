"""Every admin route with hostile parameters: a client's mistake is a 4xx in OpenAI's error shape, never a 5xx.

The real app (create_app over a real Platform: DuckDB, key store, registry) without engines: the routes
under test read and write the database, and nothing here needs a model.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

HOSTILE = ["-1", "0", "-9223372036854775809", "99999999999999999999", "1e309", "abc", "", "%00", "' OR 1=1 --",
           "x" * 5000, "1.5", "NaN", "\u202e\u0000"]  # fmt: skip
# never a valid body (a valid one could start real work: a backup, a cycle)
BODIES = [b"[]", b'"x"', b"{", b"null", b"\xff\xfe"]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    from keel.app import Platform, create_app
    from keel.config import load_settings

    data = tmp_path_factory.mktemp("fuzz")
    settings = load_settings(overrides=[f"data_dir={data}", "router.enabled=false", "rag.corpus_paths=[]"])
    platform = Platform(settings)
    app = create_app(platform)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {platform.admin_key}"
        yield app, client


def admin_routes(app) -> list[tuple[str, str, list[str]]]:
    """(method, path, query parameter names) of every route under /admin."""
    out = []
    for r in app.routes:
        if not isinstance(r, APIRoute) or not r.path.startswith("/admin"):
            continue
        names = [p.alias for p in r.dependant.query_params]
        for m in sorted(r.methods - {"HEAD", "OPTIONS"}):
            out.append((m, r.path, names))
    return out


def fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: quote(value, safe="") or "x", path)


def server_fault(r) -> bool:
    """A 5xx other than a 503 in OpenAI's shape (a part this engine-less platform does not run, e.g. the
    indexer: a state of the server, said as such, not a crash)."""
    if r.status_code < 500:
        return False
    if r.status_code == 503:
        try:
            return not r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            return True
    return True


def test_there_are_admin_routes_to_fuzz(app_client):
    app, _ = app_client
    routes = admin_routes(app)
    assert len(routes) >= 20 and any(names for _, _, names in routes)


@pytest.mark.parametrize("limit", ["-1", "0", "100001", "99999999999999999999", "abc"])
@pytest.mark.parametrize(
    "path",
    [
        "/admin/requests",
        "/admin/swaps",
        "/admin/flywheel/feedback",
        "/admin/flywheel/pairs",
        "/admin/flywheel/annotations",
    ],  # fmt: skip
)
def test_bad_limit_is_a_400_in_openai_shape(app_client, path, limit):
    _, client = app_client
    r = client.get(path, params={"limit": limit})
    assert r.status_code == 400, (path, limit, r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["param"].endswith("limit") and err["type"] == "invalid_request_error" and err["message"]


def test_every_admin_route_survives_hostile_parameters(app_client):
    app, client = app_client
    failures = []
    for method, path, names in admin_routes(app):
        if method == "GET":
            for value in HOSTILE:
                url = fill(path, value)
                for params in ({n: value for n in names}, {}):
                    r = client.request(method, url, params=params)
                    if server_fault(r):
                        failures.append(
                            f"{method} {url[:80]} {str(params)[:80]} → {r.status_code} {r.text[:120]}"
                        )
        else:  # bodies of the wrong shape and hostile query values: refused before any work starts
            for body in BODIES:
                url = fill(path, "-1")
                r = client.request(
                    method, url, content=body, params={n: "-1" for n in names},
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip
                if server_fault(r):
                    failures.append(f"{method} {url[:80]} {body[:20]!r} → {r.status_code} {r.text[:120]}")
                elif r.status_code < 400:
                    failures.append(f"{method} {url[:80]} {body[:20]!r} accepted ({r.status_code})")
    assert not failures, "\n".join(failures[:30])
