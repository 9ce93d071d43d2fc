"""Cleaning: Unicode normalisation, Markdown front matter, doc-site markup, garbage/encoding filters,
length limits."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

# front matter at the top, possibly after a BOM, blank lines or markdownlint comments
FRONT_MATTER = re.compile(r"\A\ufeff?\s*(?:<!--.*?-->\s*)*---\s*\n.*?\n---\s*(?:\n|\Z)", re.DOTALL)
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


def clean_markdown(text: str, counts: Counter | None = None) -> str:
    """Front matter and HTML comments removed (counted into ``counts`` when given)."""
    body, title = strip_front_matter(text)
    body, n = HTML_COMMENT.subn("", body)
    if counts is not None:
        counts["front_matter"] += body is not text
        counts["html_comment"] += n
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


# ---- doc-site markup ------------------------------------------------------------------------------------
# The docs are the source of a website (Hugo / MDX). Its markup is rendering instructions, never text an
# answer should contain, and a model trained on it writes it back (`{{< copyable "shell" >}}` in answers).

# Hugo shortcodes: {{< name args >}}, {{< /name >}}, {{% name %}}; only these delimiters (the Go templates
# inside code blocks, e.g. TiCDC's `{{.Table}}`, are content and stay).
SHORTCODE = re.compile(r"\{\{[<%].*?[>%]\}\}")
# Site variables `{{{ .company }}}`: replaced by the value the site renders (see SITE_VARIABLES).
TEMPLATE_VAR = re.compile(r"\{\{\{\s*\.([\w-]+)\s*\}\}\}")
# A leftover front-matter key line at the top of a text whose `---` fences were lost.
FM_KEY = re.compile(r"\A(?:(?:title|summary|aliases|date|category|keywords):[^\n]*\n)+")
# Lines that are only a site component's tag (<SimpleTab>, <div label="SQL">, </CustomContent>, ...).
COMPONENT_LINE = re.compile(
    r"^[ \t]*</?(?:[A-Z][A-Za-z0-9]*|div)(?:\s[^<>]*)?/?>[ \t]*$",
    re.MULTILINE,
)
TAB_LABEL = re.compile(r'^[ \t]*<div\s[^<>]*\blabel="([^"]+)"[^<>]*>[ \t]*$')
FENCE = re.compile(r"^[ \t]*(```|~~~)")

# What the Chinese docs site (docs.pingcap.com/zh) renders for its variables. The company variable exists
# so one source serves two sites; on the TiDB docs site it reads "PingCAP", the developer of TiDB. The
# TiDB Cloud tiers are the values of pingcap/docs-cn's variables.json. A variable not listed here is
# removed whole (counted): a half-stripped `{{{ .x }}}` would teach the model a fragment of template syntax.
SITE_VARIABLES: dict[str, str] = {
    "company": "PingCAP",
    "tidb": "TiDB",
    "starter": "TiDB Cloud Starter",
    "essential": "TiDB Cloud Essential",
    "premium": "TiDB Cloud Premium",
    "dedicated": "TiDB Cloud Dedicated",
}


def strip_site_markup(text: str, variables: dict[str, str] | None = None) -> tuple[str, Counter]:
    """Remove doc-site markup outside fenced code blocks; returns the text and what was removed.

    Code blocks are kept (their braces and tags are content; only site variables are filled in, as the
    site does). A tab's label
    (`<div label="Python">`) is kept as a line of its own, since the text under it depends on it.
    """
    values = SITE_VARIABLES if variables is None else variables
    counts: Counter = Counter()

    def var(m: re.Match) -> str:
        name = m.group(1)
        if name in values:
            counts["site_variable"] += 1
            return values[name]
        counts["site_variable_dropped"] += 1
        return ""

    out: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        line = TEMPLATE_VAR.sub(var, line)  # the site renders its variables in code blocks too
        m = FENCE.match(line)
        if fence is not None:  # inside a code block: only the closing fence ends it
            out.append(line)
            if m and m.group(1) == fence:
                fence = None
            continue
        if m:
            fence = m.group(1)
            out.append(line)
            continue
        line, n = SHORTCODE.subn("", line)
        counts["shortcode"] += n
        if COMPONENT_LINE.match(line):
            counts["site_tag"] += 1
            label = TAB_LABEL.match(line)
            if label:
                out.append(label.group(1))
            continue
        if n and not line.strip():
            continue  # the shortcode was the whole line
        out.append(line)
    cleaned = "\n".join(out)
    if fence is None:  # an unclosed block is content to the end: nothing after it was touched
        cleaned, n = FM_KEY.subn("", cleaned.lstrip("\n"), count=1)
        counts["front_matter_leftover"] += n
    return cleaned, +counts
