"""The web layer's shared parts: one template set (templates/) and one static folder (static/, at /static)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")

# autoescape on: every {{ value }} in a page is HTML-escaped
templates = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def mount_static(app: FastAPI) -> None:
    """Local assets only (no CDN): the console's script, styles and charts are committed files."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
