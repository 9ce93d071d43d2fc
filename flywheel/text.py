"""Small text helpers for mining: prompt text, a fallback PII scrubber. The platform passes in the training
data pipeline's scrubber and its near-duplicate index; normalisation and MinHash are keelcommon.text's.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any


def content_text(content: Any) -> str:
    """The text of a message content (a string or OpenAI content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def prompt_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role')}: {content_text(m.get('content'))}" for m in messages)


# The "Sources:" list the gateway appends to domain answers: a blank line, "Sources:", then lines that
# start with [n]. A user who edits an answer usually keeps it; a training answer must never carry it.
_SOURCES_TAIL = re.compile(r"\n[ \t]*\n[ \t]*Sources:[ \t]*\n(?:[ \t]*(?:\[\d+\])+[^\n]*(?:\n|$))+\s*$")


def strip_appended(text: str, appended: str | None = None) -> str:
    """``text`` without what the gateway appended: the exact ``appended`` text when it ends ``text``,
    else a trailing sources list in the gateway's format (an edited copy of it included)."""
    if appended:
        if text.endswith(appended):
            return text[: -len(appended)]
        if text.rstrip().endswith(appended.strip()):
            return text.rstrip()[: -len(appended.strip())].rstrip()
    m = _SOURCES_TAIL.search(text)
    return text[: m.start()] if m else text


def stable_key(*parts: Any) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:32]


_PII = [
    ("<SECRET>", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}\b")),
    ("<EMAIL>", re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    ("<PHONE>", re.compile(r"(?<![\w-])(?:\+\d{1,3}[ -]?)?(?:\(\d{3}\) ?|\d{3}-)\d{3}-\d{4}(?![\w-])")),
    ("<PHONE>", re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")),
]


def basic_scrub(text: str) -> str:
    """Fallback PII scrubber (emails, phone numbers, API keys)."""
    for repl, pat in _PII:
        text = pat.sub(repl, text)
    return text
