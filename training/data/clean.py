"""Cleaning: Unicode normalisation, Markdown front matter, garbage/encoding filters, length limits."""

from __future__ import annotations

import re
import unicodedata

FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.DOTALL)
HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
BLANK_RUNS = re.compile(r"\n{3,}")
WORDLIKE = re.compile(r"[\w\u4e00-\u9fff]", re.UNICODE)


def strip_front_matter(text: str) -> tuple[str, str | None]:
    """Remove YAML front matter; return the body and the title it named (if any)."""
    m = FRONT_MATTER.match(text)
    if not m:
        return text, None
    title = re.search(r"^title:\s*(.+)$", m.group(0), re.MULTILINE)
    return text[m.end() :], title.group(1).strip().strip("'\"") if title else None


def clean_markdown(text: str) -> str:
    body, title = strip_front_matter(text)
    body = HTML_COMMENT.sub("", body)
    # keep the page title when the body does not start with its own heading
    if title and not body.lstrip().startswith("#"):
        body = f"# {title}\n\n{body}"
    return body


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    text = CONTROL.sub("", text)
    return BLANK_RUNS.sub("\n\n", text).strip()


def garbage_reason(text: str, min_wordlike: float = 0.25) -> str | None:
    """Why a text is garbage (encoding damage, mostly symbols), or None."""
    if not text:
        return "empty"
    if text.count("\ufffd") / len(text) > 0.001:
        return "encoding"
    if len(WORDLIKE.findall(text)) / len(text) < min_wordlike:
        return "symbols"
    return None


def split_long(text: str, max_chars: int) -> list[str]:
    """Split at paragraph boundaries into pieces of at most ~max_chars (a long doc is not garbage)."""
    if len(text) <= max_chars:
        return [text]
    pieces, cur = [], ""
    for para in text.split("\n\n"):
        if cur and len(cur) + len(para) + 2 > max_chars:
            pieces.append(cur)
            cur = ""
        while len(para) > max_chars:
            pieces.append(para[:max_chars])
            para = para[max_chars:]
        cur = f"{cur}\n\n{para}" if cur else para
    if cur:
        pieces.append(cur)
    return pieces
