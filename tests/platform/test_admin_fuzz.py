"""Every admin route with hostile parameters: a client's mistake is a 4xx in OpenAI's error shape, never a 5xx.

The real app (create_app over a real Platform: DuckDB, key store, registry) without engines: the routes
under test read and write the database, and nothing here needs a model.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute

HOSTILE = ["-1", "0", "-9223372036854775809", "99999999999999999999", "1e309", "abc", "", "%00", "' OR 1=1 --",
           "x" * 5000, "1.5", "NaN", "\u202e\u0000"]  # fmt: skip
# never a valid body (a valid one could start real work: a backup, a cycle)
BODIES = [b"[]", b'"x"', b"{", b"null", b"\xff\xfe"]


@pytest.fixture(scope="module")
def app_client(engineless_app):
    platform, app, client = engineless_app
    client.headers["Authorization"] = f"Bearer {platform.admin_key}"
    return app, client


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


# ---- the hostile probe's findings (issue 28 item 9): each is a 4xx in OpenAI's shape now ---------------
def _error(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["message"] and err["type"]
    return err


def _checkpoint_folder(root, name: str, **manifest):
    import json

    folder = root / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(
    "version",
    ["../../x", "/abs/olute", "a/b", "..", ".hidden", "a..b", "nul\x00byte", "x" * 129, "sp ace", "é"],
)
def test_a_version_name_that_is_not_one_folder_name_is_refused_at_registration(app_client, tmp_path, version):
    _, client = app_client
    folder = _checkpoint_folder(tmp_path, "cand")
    err = _error(client.post("/admin/checkpoints", json={"path": str(folder), "version": version}), 400)
    assert "version" in err["message"]
    assert client.get("/admin/checkpoints").status_code == 200


def test_a_version_from_the_manifest_is_checked_too(app_client, tmp_path):
    _, client = app_client
    folder = _checkpoint_folder(tmp_path, "cand", version="../../../etc/x")
    _error(client.post("/admin/checkpoints", json={"path": str(folder)}), 400)


@pytest.mark.parametrize("path", ["/tmp/a\x00b", "x" * 5000, "/" + "y" * 300])
def test_a_nul_byte_or_impossible_checkpoint_path_is_a_400(app_client, path):
    _, client = app_client
    _error(client.post("/admin/checkpoints", json={"path": path}), 400)


def test_a_nul_byte_in_a_backup_destination_is_a_400(app_client, tmp_path):
    _, client = app_client
    _error(client.post("/admin/backup", json={"dest": f"{tmp_path}/b\x00x"}), 400)
    _error(client.post("/admin/backup", json={"dest": "/" + "z" * 300 + "/b"}), 400)


def test_backups_after_an_escape_attempt_stay_in_their_folder(app_client, tmp_path):
    """A version registered before names were checked (``../../escaped``) is left out of every backup
    and named in its manifest; before, the first backup wrote it outside its folder and the next one
    failed with a 500."""
    app, client = app_client
    db = app.state.platform.db
    folder = _checkpoint_folder(tmp_path / "src", "legacy")
    db.execute(
        "INSERT INTO checkpoints (version, path, status, manifest) VALUES (?, ?, 'candidate', '{}')",
        ["../../escaped", str(folder)],
    )
    try:
        for name in ("b1", "b2"):
            dest = tmp_path / "backups" / name
            r = client.post("/admin/backup", json={"dest": str(dest), "checkpoints": True})
            assert r.status_code == 200, r.text[:300]
            entry = next(c for c in r.json()["checkpoints"] if c["version"] == "../../escaped")
            assert entry["copied"] is False and "invalid version" in entry["skipped"]
            assert not (tmp_path / "escaped").exists() and not (tmp_path / "backups" / "escaped").exists()
            assert sorted(p.name for p in (tmp_path / "backups").iterdir())[-1] == name
    finally:
        db.execute("DELETE FROM checkpoints WHERE version = ?", ["../../escaped"])


@pytest.mark.parametrize(
    "out", ["../../..", "../../../tmp/flywheel-escape", "/etc/keel-export", "a\x00b", "x" * 2000, "y" * 300]
)
def test_an_export_outside_the_data_dir_is_a_400(app_client, out):
    _, client = app_client
    err = _error(client.post("/admin/flywheel/export", json={"out": out}), 400)
    assert err["param"] == "out"


def _profile(app, name: str, content: bytes | None) -> str:
    """A file (or folder, when ``content`` is None) in the data dir, where profiles may come from."""
    path = app.state.platform.settings.data_dir / name
    if content is None:
        path.mkdir(exist_ok=True)
    else:
        path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(
    "case",
    ["too long", "too long a component", "a directory", "a YAML string", "a YAML list", "not UTF-8",
     "outside the data dir", "NUL"],
)  # fmt: skip
def test_a_bad_cycle_profile_is_a_400_and_starts_nothing(app_client, tmp_path, case):
    app, client = app_client
    profile = {
        "too long": "x" * 5000,
        "too long a component": "y" * 300 + ".yaml",
        "a directory": lambda: _profile(app, "folder.yaml", None),
        "a YAML string": lambda: _profile(app, "string.yaml", b"just a string\n"),
        "a YAML list": lambda: _profile(app, "list.yaml", b"- a\n- b\n"),
        "not UTF-8": lambda: _profile(app, "latin.yaml", b"cycle:\n  profile: caf\xe9\n"),
        "outside the data dir": lambda: str(tmp_path / "elsewhere.yaml"),
        "NUL": "demo\x00.yaml",
    }[case]
    if callable(profile):
        profile = profile()
    if case == "outside the data dir":
        (tmp_path / "elsewhere.yaml").write_text("cycle:\n  launcher:\n    kind: command\n")
    before = client.get("/admin/cycles").json()
    err = _error(client.post("/admin/cycles", json={"profile": profile, "dry_run": True}), 400)
    assert err["code"] == "cycle_refused"
    assert client.get("/admin/cycles").json() == before


@pytest.mark.parametrize("hours", ["nan", "NaN", "inf", "-inf", "-1", "0", "1e9"])
def test_console_traffic_hours_out_of_range_is_a_400(app_client, hours):
    _, client = app_client
    err = _error(client.get("/console/api/traffic", params={"hours": hours}), 400)
    assert err["param"].endswith("hours")


def test_promote_and_rollback_name_the_key_not_the_body(app_client, base_model_dir, tmp_path):
    app, client = app_client
    # the shared base model through links, with a manifest of its own (promotion writes to it)
    model = tmp_path / "model"
    model.mkdir()
    for f in base_model_dir.iterdir():
        if f.is_file() and f.name != "manifest.json" and not f.name.startswith("."):
            (model / f.name).symlink_to(f)
    (model / "manifest.json").write_text('{"stage": "base"}')
    platform = app.state.platform
    _, secret = platform.keys.create("ops-alice", "admin")
    as_alice = {"Authorization": f"Bearer {secret}"}
    for version in ("probe-by-1", "probe-by-2"):
        r = client.post("/admin/checkpoints", json={"path": str(model), "version": version})
        assert r.status_code == 200, r.text[:300]
        body = {"version": version, "by": "mallory", "reason": "probe"}
        r = client.post("/admin/promote", headers=as_alice, json=body)
        assert r.status_code == 200, r.text[:300]
    r = client.post("/admin/rollback", headers=as_alice, json={"by": "mallory", "reason": "probe back"})
    assert r.status_code == 200, r.text[:300]
    names = {h["by_whom"] for h in client.get("/admin/swaps").json()}
    assert "ops-alice" in names and "mallory" not in names


@pytest.mark.parametrize("route", ["/admin/promote", "/admin/rollback", "/console/api/promote"])
def test_a_reason_is_capped(app_client, route):
    _, client = app_client
    body = {"version": "base", "to": "base", "reason": "r" * 200_000}
    err = _error(client.post(route, json=body), 400)
    assert err["param"].endswith("reason")


def test_admin_bodies_have_a_size_limit(app_client):
    _, client = app_client
    big = b'{"name": "' + b"x" * (8 << 20) + b'"}'
    for path in ("/admin/keys", "/admin/backup", "/console/api/promote"):
        err = _error(client.post(path, content=big, headers={"Content-Type": "application/json"}), 413)
        assert err["code"] == "body_too_large"

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"x" * 65536

    _error(client.post("/admin/keys", content=chunks(), headers={"Content-Type": "application/json"}), 413)
    # a normal body still goes through
    assert client.post("/admin/keys", json={"name": "small", "role": "user"}).status_code == 200


def _security_headers(r, frame: bool = True) -> str:
    csp = r.headers.get("content-security-policy", "")
    assert r.headers.get("x-content-type-options") == "nosniff", (r.url, dict(r.headers))
    assert "frame-ancestors 'none'" in csp, (r.url, csp)
    return csp


def test_console_api_and_reports_send_the_security_headers(app_client, tmp_path):
    _, client = app_client
    anon = {"Authorization": ""}
    page = client.get("/console", headers=anon)
    assert page.status_code == 200 and "script-src 'self'" in _security_headers(page)
    assert "unsafe-eval" not in page.headers["content-security-policy"]
    _security_headers(client.get("/console/api/overview"))
    _security_headers(client.get("/console/api/overview", headers=anon))  # the 401 too
    folder = _checkpoint_folder(tmp_path, "reported")
    (folder / "report.html").write_text("<html><script>alert(1)</script></html>")
    assert (
        client.post("/admin/checkpoints", json={"path": str(folder), "version": "reported"}).status_code
        == 200
    )
    report = client.get("/console/report/checkpoint/reported")
    assert report.status_code == 200 and _security_headers(report).startswith("sandbox")
    assert "sandbox" in _security_headers(client.get("/admin/cycles/nope/report"))
    _security_headers(client.get("/admin/checkpoints"))
