"""The annotation page and its JSON API, served by the platform.

Log in with an annotator (or admin) key; the page keeps a session cookie (HttpOnly, SameSite=Strict).
A session is checked against the key store on every request (revoking the key ends it at once) and
expires after ``annotation.session_ttl_s``. API calls also accept ``Authorization: Bearer <key>``.
Markdown is rendered on the server with raw HTML disabled and images shown as links, so text from users
and models is inert on the page and loads nothing from other hosts; the page's Content-Security-Policy
allows only its own origin (and its one inline script, by nonce).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from pydantic import BaseModel, Field

from keel.annotation_config import AnnotationConfig
from keel.store.db import Database
from keel.store.keys import KeyStore
from keel.store.review import DECISIONS, Filters, LeaseError, ReviewQueue
from keel.store.router_flags import request_flag
from keel.web.pages import templates
from keel.web.sessions import KeySessions
from serving.errors import APIError
from serving.gateway.auth import Principal, bearer_token
from serving.router.intents import ROUTES

router = APIRouter(prefix="/annotate")
COOKIE = "keel_annotate"
ROLES = ("annotator", "admin")
_templates = templates  # the web layer's one template set (keel.web.pages)
# commonmark with raw HTML off: <script> in an answer is shown as text, never run
_md = MarkdownIt("commonmark", {"html": False}).enable("table")


def _image_as_link(self, tokens, idx, options, env) -> str:
    """A user's ![alt](url) becomes a link: an <img> would fetch from any host (tracking, leaks)."""
    tok = tokens[idx]
    src = escapeHtml(tok.attrGet("src") or "")
    alt = escapeHtml(self.renderInlineAsText(tok.children or [], options, env)) or src
    return f'<a href="{src}" rel="noopener noreferrer nofollow" target="_blank">[image: {alt}]</a>'


_md.add_render_rule("image", _image_as_link)


def render_markdown(text: str) -> str:
    return _md.render(text or "")


def csp(nonce: str) -> str:
    """Only this origin: no remote images, scripts, frames or form targets; inline script by nonce only."""
    return (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        f"script-src 'self' 'nonce-{nonce}'; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'; object-src 'none'"
    )


def _html(body: str, nonce: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        body,
        status_code=status_code,
        headers={"Content-Security-Policy": csp(nonce), "X-Content-Type-Options": "nosniff"},
    )


class AnnotationService:
    def __init__(self, db: Database, keys: KeyStore, cfg: AnnotationConfig):
        self.keys = keys
        self.queue = ReviewQueue(db, cfg.lease_s)
        self.sessions = KeySessions(keys, cfg.session_ttl_s, ROLES)

    def start_session(self, p: Principal) -> str:
        return self.sessions.start(p.key_id)

    def session(self, sid: str) -> Principal | None:
        """The session's key as the key store has it now (None once it expired, was revoked or lost its role)."""
        live = self.sessions.get(sid)
        return live.principal if live else None


def service(request: Request) -> AnnotationService:
    state = request.app.state
    if getattr(state, "annotation", None) is None:
        p = state.platform
        state.annotation = AnnotationService(p.db, p.keys, p.settings.annotation)
    return state.annotation


Service = Annotated[AnnotationService, Depends(service)]


def _principal(request: Request, svc: AnnotationService) -> Principal | None:
    token = bearer_token(request.headers.get("authorization"))
    if token:
        p = svc.keys.verify(token)
        return p if p is not None and p.role in ROLES else None
    sid = request.cookies.get(COOKIE)
    return svc.session(sid) if sid else None


def annotator(request: Request, svc: Service) -> Principal:
    p = _principal(request, svc)
    if p is None:
        raise APIError(401, "log in with an annotator key", "invalid_api_key")
    return p


Annotator = Annotated[Principal, Depends(annotator)]


@router.get("", response_class=HTMLResponse)
def page(request: Request, svc: Service) -> Response:
    p = _principal(request, svc)
    nonce = secrets.token_urlsafe(16)
    if p is None:
        return _html(_templates.get_template("login.html").render(error=None, nonce=nonce), nonce)
    page = _templates.get_template("annotate.html").render(
        name=p.name, decisions=DECISIONS, intents=ROUTES, nonce=nonce
    )
    return _html(page, nonce)


@router.post("/login")
def login(svc: Service, key: Annotated[str, Form()] = "") -> Response:
    p = svc.keys.verify(key.strip()) if key.strip() else None
    if p is None or p.role not in ROLES:
        nonce = secrets.token_urlsafe(16)
        html = _templates.get_template("login.html").render(
            error="That key is not an active annotator key.", nonce=nonce
        )
        return _html(html, nonce, status_code=401)
    sid = svc.start_session(p)
    r = RedirectResponse("/annotate", status_code=303)
    r.set_cookie(
        COOKIE, sid, httponly=True, samesite="strict", path="/annotate", max_age=int(svc.sessions.ttl_s)
    )
    return r


@router.post("/logout")
def logout(request: Request, svc: Service) -> Response:
    svc.sessions.end(request.cookies.get(COOKIE))
    r = RedirectResponse("/annotate", status_code=303)
    r.delete_cookie(COOKIE, path="/annotate")
    return r


def _date(v: str | None) -> datetime | None:
    if not v:
        return None
    try:
        return datetime.fromisoformat(v)
    except ValueError as e:
        raise APIError(400, f"'{v}' is not a date (YYYY-MM-DD)", "invalid_request") from e


@router.get("/api/next")
def next_item(
    svc: Service,
    who: Annotator,
    route: str | None = None,
    source: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    filters = Filters(route or None, source or None, _date(since), _date(until))
    item = svc.queue.next_item(who.key_id, filters)
    if item is None:
        return {"item": None}
    rid = _flaggable_request(item)
    # the route flag the next router refit would use for this item's request (anyone's, latest)
    item["route_flag"] = request_flag(svc.queue.db, rid) if rid else None
    item["html"] = {
        "a": render_markdown(item["chosen"]),
        "b": render_markdown(item["rejected"]),
        "prompt": [
            {"role": m.get("role"), "html": render_markdown(str(m.get("content") or ""))}
            for m in item["prompt"]
        ],
        "sources": [
            {
                "title": str(s.get("title") or s.get("source") or s.get("id") or ""),
                "html": render_markdown(str(s.get("text") or s.get("content") or "")),
            }
            for s in item.get("retrieved") or []
            if isinstance(s, dict)
        ],
    }
    return {"item": item}


class DecisionBody(BaseModel):
    pair_id: str
    lease_token: str
    decision: str
    edited_text: str | None = Field(None, max_length=100_000)


@router.post("/api/decision")
def decide(body: DecisionBody, svc: Service, who: Annotator) -> Response:
    try:
        out = svc.queue.decide(
            who.key_id, who.name, body.pair_id, body.lease_token, body.decision, body.edited_text
        )
    except LeaseError as e:
        raise APIError(409, str(e), "lease_expired") from e
    except KeyError as e:
        raise APIError(404, f"no pair with id '{body.pair_id}'", "pair_not_found", "pair_id") from e
    except ValueError as e:
        raise APIError(400, str(e), "invalid_request", "decision") from e
    return JSONResponse(out)


def _flaggable_request(item: dict[str, Any]) -> str | None:
    """The request whose route the page shows: a pair's route is its first request's (mining and the
    candidate sampler both put that one first)."""
    ids = (item.get("provenance") or {}).get("request_ids") or []
    return str(ids[0]) if ids else None


class RouteFlagBody(BaseModel):
    pair_id: str
    intent: str  # validated by the feedback path (one of the router's intents)


@router.post("/api/route-flag")
def flag_route(body: RouteFlagBody, request: Request, svc: Service, who: Annotator) -> Response:
    """The item's request went down the wrong route: store a `type: "route"` feedback row through the
    feedback API's own path, so it becomes a labelled example for the next gated router refit."""
    try:
        item = svc.queue.get(body.pair_id)
    except KeyError as e:
        raise APIError(404, f"no pair with id '{body.pair_id}'", "pair_not_found", "pair_id") from e
    rid = _flaggable_request(item)
    if rid is None:
        raise APIError(
            400, "this item has no request whose route could be flagged", "invalid_request", "pair_id"
        )
    out = request.app.state.platform.feedback.submit(
        {"request_id": rid, "type": "route", "intent": body.intent}, who
    )
    return JSONResponse(
        out.model_dump() | {"intent": body.intent, "routed": item.get("route")},
        status_code=200 if out.duplicate else 201,
    )


@router.get("/api/progress")
def progress(svc: Service, who: Annotator) -> dict[str, Any]:
    return svc.queue.progress(who.key_id)
