"""The operator console at /console: one page over the platform's own data, promote and roll back.

Admin keys only (the platform's ``run/admin.key`` or an admin-role key): the login form sets an HttpOnly,
SameSite=Strict session cookie scoped to /console; the JSON API also takes ``Authorization: Bearer``.
A user or annotator key gets 403. Promote and rollback go through the platform's PromotionService, the
same path and refusals as ``keel promote`` / ``keel rollback`` (failed gate without force, a swap
already running). The page builds every piece of user text with ``textContent`` (never as HTML) and
draws its charts as SVG itself, from /static: no CDN, no build step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from keel.api.deps import admin_caller, require_admin
from keel.store import console as queries
from keel.store import registry
from keel.web.pages import REPORT_CSP, templates
from keel.web.sessions import KeySessions
from serving.errors import APIError
from serving.gateway.auth import bearer_token

router = APIRouter(prefix="/console")
COOKIE = "keel_console"
LOGIN = {"heading": "Keel · console", "label": "Admin key", "action": "/console/login"}


def _sessions(request: Request) -> KeySessions:
    state = request.app.state
    if getattr(state, "console", None) is None:
        p = state.platform
        state.console = KeySessions(p.keys, p.settings.annotation.session_ttl_s, roles=("admin",))
    return state.console


def _session_name(request: Request) -> str | None:
    live = _sessions(request).get(request.cookies.get(COOKIE))
    return live.label if live else None


def operator(request: Request) -> str:
    """The admin API's rule (keel.api.deps.admin_caller) for a bearer key; else the login session's name."""
    token = bearer_token(request.headers.get("authorization"))
    if token:
        return require_admin(request)
    name = _session_name(request)
    if name is None:
        raise APIError(401, "log in with an admin key", "invalid_api_key")
    return name


Operator = Annotated[str, Depends(operator)]


# ---- page and login ------------------------------------------------------------------------------------
@router.get("", response_class=HTMLResponse)
def page(request: Request) -> Response:
    name = _session_name(request)
    if name is None:
        return HTMLResponse(templates.get_template("login.html").render(error=None, **LOGIN))
    return HTMLResponse(templates.get_template("console.html").render(name=name))


@router.post("/login")
def login(request: Request, key: Annotated[str, Form()] = "") -> Response:
    try:
        who = admin_caller(request.app.state.platform, key.strip())
    except APIError as e:  # the same rule as the API, said on the login page
        error = {
            403: "That key is not an admin key: the console needs the platform's admin key.",
        }.get(e.status, "That key is not an active key.")
        html = templates.get_template("login.html").render(error=error, **LOGIN)
        return HTMLResponse(html, status_code=e.status)
    sid = _sessions(request).start(who.key_id, who.name)
    r = RedirectResponse("/console", status_code=303)
    r.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/console")
    return r


@router.post("/logout")
def logout(request: Request) -> Response:
    _sessions(request).end(request.cookies.get(COOKIE))
    r = RedirectResponse("/console", status_code=303)
    r.delete_cookie(COOKIE, path="/console")
    return r


# ---- JSON API ------------------------------------------------------------------------------------------
def _platform(request: Request):
    return request.app.state.platform


@router.get("/api/overview")
def overview(request: Request, who: Operator) -> dict[str, Any]:
    p = _platform(request)
    cps = [c.to_dict() for c in registry.list_all(p.db)]
    for c in cps:
        m = c.get("manifest") or {}
        c["has_report"] = (Path(c["path"]) / "report.html").is_file()
        c["metrics"] = m.get("final_metrics") or m.get("metrics") or {}
        c.pop("manifest", None)  # large; the lineage needs only parent/stage
    index = p.indexer.status() if p.indexer is not None else None
    return {
        "operator": who,
        "version": p.pool.version,
        "engines": [{"url": e.url, "version": e.version, "healthy": e.healthy} for e in p.pool.endpoints],
        "swap_running": p.swapper is not None and p.swapper.lock.locked(),
        "engine_error": p.supervisor.last_error,
        "requestlog": p.writer.stats(),
        "checkpoints": cps,
        "swaps": p.promotions.history(50),
        "gates": queries.gates(p.db),
        "index": index,
    }


MAX_HOURS = 24 * 366  # the request log's useful history; NaN, inf and <= 0 are 400s, not DuckDB errors


@router.get("/api/traffic")
def traffic(
    request: Request,
    _: Operator,
    hours: Annotated[float, Query(gt=0, le=MAX_HOURS, allow_inf_nan=False)] = 24,
) -> dict[str, Any]:
    return queries.traffic(_platform(request).db, hours)


@router.get("/api/feedback")
def feedback(request: Request, _: Operator) -> list[dict[str, Any]]:
    return queries.feedback_rates(_platform(request).db)


@router.get("/api/requests")
def requests_(
    request: Request, _: Operator, filters: Annotated[queries.RequestFilter, Query()]
) -> dict[str, Any]:
    p = _platform(request)
    p.writer.flush(2.0)  # what was just answered shows up
    return queries.recent_requests(p.db, filters)


@router.get("/api/cycles")
def cycles(request: Request, _: Operator) -> dict[str, Any]:
    from flywheel.step_outputs import progress_line

    p = _platform(request)
    out = {"available": queries.has_tables(p.db, "cycles", "cycle_steps"), "cycles": queries.cycles(p.db)}
    running = p.cycles.store.running()
    if running is not None:  # the step it is in, and a training step's live progress
        steps = [s for s in p.cycles.show(running.cycle_id)["steps"] if s["status"] == "running"]
        if steps:
            out["running"] = {
                "cycle_id": running.cycle_id,
                "step": steps[-1]["name"],
                "progress": progress_line(steps[-1].get("progress")),
            }
    return out


@router.get("/api/canary")
def canary(request: Request, _: Operator) -> dict[str, Any]:
    """The running (or last) canary with both arms' figures at its last look."""
    from keel.store import canaries

    p = _platform(request)
    rows = canaries.list_canaries(p.db, 1)
    return {"canary": rows[0] if rows else None, "config": p.settings.cycle.canary.model_dump()}


def _report(path: str | None) -> Response:
    """A Keel-written HTML report, sandboxed: no script of it runs with the console's origin."""
    if not path or not Path(path).is_file():
        raise APIError(404, "no report", "not_found")
    r = FileResponse(path, media_type="text/html")
    r.headers["Content-Security-Policy"] = REPORT_CSP
    return r


@router.get("/report/checkpoint/{version}")
def checkpoint_report(request: Request, version: str, _: Operator) -> Response:
    cp = registry.get(_platform(request).db, version)  # UnknownVersion: 404
    return _report(str(Path(cp.path) / "report.html"))


@router.get("/report/cycle/{cycle_id}")
def cycle_report(request: Request, cycle_id: str, _: Operator) -> Response:
    return _report(queries.cycle_report_path(_platform(request).db, cycle_id))


@router.get("/report/gate/{eval_id:path}")
def gate_report(request: Request, eval_id: str, _: Operator) -> Response:
    path = queries.eval_path(_platform(request).db, eval_id)
    folder = Path(path).parent if path else None
    return _report(str(folder / "report.html") if folder else None)


class PromoteBody(BaseModel):
    version: str = Field(min_length=1, max_length=200)
    force: bool = False
    reason: str | None = Field(None, max_length=2000)


class RollbackBody(BaseModel):
    to: str | None = Field(None, max_length=200)
    reason: str | None = Field(None, max_length=2000)


@router.post("/api/promote")
async def promote(request: Request, body: PromoteBody, who: Operator) -> dict[str, Any]:
    service = _platform(request).promotions
    out = await service.promote(body.version, force=body.force, by=who, reason=body.reason or "console")
    return out.to_dict()


@router.post("/api/rollback")
async def rollback(request: Request, body: RollbackBody, who: Operator) -> dict[str, Any]:
    service = _platform(request).promotions
    out = await service.rollback(body.to or None, by=who, reason=body.reason or "console")
    return out.to_dict()
