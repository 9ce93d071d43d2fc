"""Navigation text (tables of contents, index pages, "see also" lists) told apart from content, by
structure alone: the share of lines that are nothing but links (or link-list labels, or a card's blurb).

A TOC matches every query's terms (it names every page) and carries no answer, so the retriever keeps
such chunks out of its candidate lists. File names are not used ("TOC.md", "_index.md" are one
corpus's conventions); a chunk is navigation when most of its lines are list items or paragraphs that
hold only links, e.g.

    - [TiDB 简介](/overview.md)          a link line
    - 部署标准集群                         a label inside a link list (no link, a few words)
    [快速上手 TiDB](https://…)            a link paragraph
    ## [TiDB 简介](/overview.md)          a heading that is only a link
    <DevToolCard title="JDBC" docLink="/developer/…">   a tag that links (a card): a link line
    使用 JDBC 连接 TiDB。                  one short line right after a link: the card's blurb
    <LearningPath label="了解">           markup only: not counted either way

Landing pages are grids of such cards or of headings-with-links, each with a one-line description: the
description is text, but it only says what is behind the link, so it counts with the link (a blurb);
one per link, so a link followed by real paragraphs still reads as content.
"""

from __future__ import annotations

import re

_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)]*)\)|<https?://[^>]+>|\[([^\]]+)\]\[[^\]]*\]")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
# a tag whose attribute is a link: <Card href="…">, <DevToolCard docLink="…">, <a href="…">
_LINK_ATTR = r"""\s(?:href|to|url|[A-Za-z]*[Ll]ink)=["'][^"']+["']"""
_LINK_TAG = re.compile(r"^\s*<[A-Za-z][^>]*" + _LINK_ATTR)
_LINK_MARK = re.compile(r"\]\(|<http|\]\[|" + _LINK_ATTR)


def _marks(text: str) -> int:
    """How many links the text may hold (cheap: decides whether its lines are judged at all)."""
    return len(_LINK_MARK.findall(text))


BLURB_CHARS = 80  # a card's description: one short line (a sentence of a paragraph runs longer)
_RULE_CHARS = set("|:- \t")


def _markup(line: str) -> bool:
    """HTML/JSX tags or comments alone on a line, a table rule or a horizontal rule (plain string tests:
    this runs over every line of the catalog when it is loaded)."""
    t = line.strip()
    if t[:1] == "<":
        return t.endswith(">")
    return t[:1] in ("|", ":", "-") and set(t) <= _RULE_CHARS


_LEFTOVER = re.compile(r"[\s\-–—*+|:：,，;；/、.()（）]+")


def _kind(line: str) -> str | None:
    """'link', 'label', 'text' or None (markup, blank)."""
    if not line.strip():
        return None
    if _markup(line):
        return "link" if line.lstrip()[:1] == "<" and _LINK_TAG.match(line) else None
    item = bool(_ITEM.match(line))
    body = _ITEM.sub("", line, count=1)
    links = _LINK.findall(body)
    rest = _LEFTOVER.sub("", _LINK.sub("", body))
    if links and len(rest) <= 3:
        return "link"
    # a short list item without a link, between links: a TOC group label ("- 部署标准集群")
    if item and not links and len(body.strip()) <= 24 and not re.search(r"[。？！?!]$|[.:：]$", body.strip()):
        return "label"
    return "text"


def _kinds(lines: list[str]) -> list[str]:
    """Each counted line's kind; the first short text line after a link line is the link's blurb
    ('label'). Markup and blank lines between them (a card's closing tag) do not break the pair."""
    out: list[str] = []
    after_link = False
    for line in lines:
        k = _kind(line)
        if k is None:
            continue
        if k == "text" and after_link and len(line.strip()) <= BLURB_CHARS:
            k = "label"
        after_link = k == "link"
        out.append(k)
    # a label belongs to a link list only beside a link (a TOC group's name, a card's blurb); a run of
    # short items with no link next to them is a word list (SQL keywords, options): content
    return [
        "text"
        if k == "label"
        and "link" not in (out[i - 1] if i else None, out[i + 1] if i + 1 < len(out) else None)
        else k
        for i, k in enumerate(out)
    ]


def _counts(text: str) -> tuple[int, int, int]:
    """(link lines, label lines, content lines)."""
    kinds = _kinds(text.splitlines())
    return kinds.count("link"), kinds.count("label"), len(kinds)


def _judge(links: int, labels: int, lines: int, min_share: float, min_links: int) -> bool:
    return links >= min_links and lines > 0 and (links + labels) / lines >= min_share


def link_share(text: str) -> tuple[float, int]:
    """(share of content lines that are link or label lines, number of link lines)."""
    links, labels, lines = _counts(text)
    if not lines or not links:
        return 0.0, links
    return (links + labels) / lines, links


def is_navigation(text: str, min_share: float = 0.8, min_links: int = 5) -> bool:
    """Mostly links: at least `min_links` link lines and `min_share` of the lines links or labels.

    Defaults are for one chunk (a section): reference lists whose links are the content ("可复制的
    DDL: - [`ALTER TABLE ... ADD COLUMN`](…)：…") sit near 0.6 and stay; TOC sections are ~1.0.
    A whole document is judged with `min_share=0.6` (an index page has an intro paragraph or two).
    """
    if _marks(text) < min_links:
        return False  # too few links to be navigation: most chunks stop here (cheap)
    share, links = link_share(text)
    return links >= min_links and share >= min_share


DOCUMENT_SHARE = 0.6  # a document this much links is a navigation page: none of its chunks is a source


def _body(text: str) -> str:
    """A chunk's text without its "title / heading" first line (chunking.py puts it there)."""
    return text.split("\n", 1)[1] if "\n" in text else ""


def navigation_ids(chunks: list) -> set[str]:
    """Ids of the chunks that are navigation: every chunk of a navigation document, and link-list
    sections of other documents. `chunks` are `Chunk`s (id, source, text) in document order. Each line
    is judged once; a document's share is the sum over its chunks."""
    by_doc: dict[str, list] = {}
    for c in chunks:
        by_doc.setdefault(c.source, []).append(c)
    out: set[str] = set()
    for cs in by_doc.values():
        bodies = [_body(c.text) for c in cs]
        marks = [_marks(b) for b in bodies]
        if sum(marks) < 5:  # neither the document nor a section can be
            continue
        counts = [
            _counts(b) if m else (0, 0, len(b.splitlines())) for b, m in zip(bodies, marks, strict=True)
        ]
        total = [sum(x) for x in zip(*counts, strict=True)]
        if _judge(*total, DOCUMENT_SHARE, 5):
            out.update(c.id for c in cs)
        else:
            out.update(c.id for c, n in zip(cs, counts, strict=True) if _judge(*n, 0.8, 5))
    return out
