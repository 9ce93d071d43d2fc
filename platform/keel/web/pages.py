"""The web layer's shared parts: one template set (templates/), one static folder (static/, at /static),
and the security headers every admin page, its JSON and every report is served with."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")

# autoescape on: every {{ value }} in a page is HTML-escaped
templates = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))

# The console (and its login page, its JSON): this origin only, as the annotation page; its script is a
# committed file under /static, so no inline script at all; never framed (clickjacking a promote button).
CONSOLE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
# A Keel-written HTML report (training, gate, cycle) holds model and user text: sandboxed, no script, no
# fetch, no frame, nothing from another host.
REPORT_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
# The admin API's JSON: nothing in it is meant to render or run.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def csp_for(path: str) -> str | None:
    """The policy a path is served with (None: left to its route, e.g. /annotate sets its own nonce)."""
    if path.startswith("/console/report/") or (
        path.startswith("/admin/cycles/") and path.endswith("/report")
    ):
        return REPORT_CSP
    if path == "/console" or path.startswith("/console/"):
        return CONSOLE_CSP
    if path.startswith("/admin/") or path == "/metrics":
        return API_CSP
    return None


class SecurityHeaders:
    """Adds the CSP (with frame-ancestors) and nosniff to every response of the admin surfaces, errors
    included, unless the route set its own. Pure ASGI: the streaming gateway under /v1 passes untouched."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = csp_for(scope["path"]) if scope["type"] == "http" else None
        if policy is None:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", policy)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_static(app: FastAPI) -> None:
    """Local assets only (no CDN): the console's script, styles and charts are committed files."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
