"""Split documents into retrieval chunks.

Markdown is cut along its headings (found with markdown-it, so a `#` inside a code block is not a
heading); a section longer than the size limit is packed paragraph by paragraph and, if a single
paragraph is still too long, cut into overlapping windows. Every chunk starts with "title / heading
path" so the embedding and BM25 both see where it comes from (a bare "## 注意事项" body means little).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from markdown_it import MarkdownIt

from serving.rag.documents import Document

CHUNKER_VERSION = 2  # 2: the front-matter summary may be a chunk of its own
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(r"<[^>]+>")
_md = MarkdownIt("commonmark")


@dataclass
class Chunk:
    id: str
    text: str  # what is embedded and shown to the model
    source: str
    relpath: str
    title: str
    heading: str  # "Section > Subsection"
    chunk_no: int  # position in its document (0-based)
    hash: str  # sha256 of text, 16 hex digits
    file_hash: str = ""

    def metadata(self) -> dict:
        return {
            "source": self.source,
            "relpath": self.relpath,
            "title": self.title,
            "heading": self.heading,
            "chunk": self.chunk_no,
            "hash": self.hash,
            "file_hash": self.file_hash,
        }

    @classmethod
    def from_metadata(cls, id: str, text: str, meta: dict) -> Chunk:
        return cls(
            id=id,
            text=text,
            source=meta["source"],
            relpath=meta["relpath"],
            title=meta.get("title", ""),
            heading=meta.get("heading", ""),
            chunk_no=int(meta.get("chunk", 0)),
            hash=meta.get("hash", ""),
            file_hash=meta.get("file_hash", ""),
        )


def _sections(body: str) -> list[tuple[list[str], str]]:
    """(heading path, section text) pairs in document order; text before the first heading has path []."""
    lines = body.splitlines()
    heads = [
        (tok.map[0], int(tok.tag[1]), _TAG.sub("", tokens[i + 1].content).strip())
        for tokens in [_md.parse(body)]
        for i, tok in enumerate(tokens)
        if tok.type == "heading_open" and tok.map
    ]
    out: list[tuple[list[str], str]] = []
    stack: list[tuple[int, str]] = []
    starts = [h[0] for h in heads] + [len(lines)]
    if heads and heads[0][0] > 0:
        out.append(([], "\n".join(lines[: heads[0][0]])))
    elif not heads:
        out.append(([], body))
    for (line, level, text), end in zip(heads, starts[1:], strict=True):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text))
        out.append(([t for _, t in stack], "\n".join(lines[line + 1 : end])))
    return out


def _pack(text: str, budget: int, overlap: int) -> list[str]:
    """Pieces of at most `budget` chars, split at blank lines where possible, windows with overlap otherwise."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[str] = []
    cur = ""
    for p in paras:
        if len(p) > budget:
            if cur:
                pieces.append(cur)
                cur = ""
            step = max(1, budget - overlap)
            pieces.extend(p[i : i + budget] for i in range(0, max(1, len(p) - overlap), step))
            continue
        if cur and len(cur) + 2 + len(p) > budget:
            pieces.append(cur)
            # carry the tail of the previous piece so a fact split across the boundary stays findable
            tail = cur[-overlap:] if overlap else ""
            cur = (tail + "\n\n" + p) if tail and len(tail) + 2 + len(p) <= budget else p
        else:
            cur = f"{cur}\n\n{p}" if cur else p
    if cur:
        pieces.append(cur)
    return pieces


def chunking_fingerprint(chunk_chars: int, overlap: int, summary_chunks: bool) -> str:
    """What decides a file's chunks besides its bytes. An index whose catalog records another fingerprint
    re-chunks its unchanged files (ids are content-addressed: only chunks that really changed are
    embedded again)."""
    return f"{CHUNKER_VERSION}:{chunk_chars}:{overlap}:{int(summary_chunks)}"


def chunk_document(
    doc: Document,
    chunk_chars: int = 800,
    overlap: int = 100,
    file_hash: str = "",
    summary_chunks: bool = False,
) -> list[Chunk]:
    body = _COMMENT.sub("", doc.text)
    sections = _sections(body) if doc.kind == "markdown" else [([doc.part] if doc.part else [], body)]
    summary = str(doc.meta.get("summary") or "").strip() if summary_chunks else ""
    if summary:
        # the page's own summary (front matter) as a chunk of its own: it says what the page is about in
        # the words of a general question ("TiDB 是 … 研发的开源分布式关系型数据库"), where its sections
        # are about details
        sections = [(["summary"], summary), *sections]
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for path, text in sections:
        if not text.strip():
            continue
        heading = " > ".join(path)
        # the H1 usually repeats the front-matter title; don't spend chunk characters on it twice
        shown = path[1:] if path and path[0] in (doc.title, "summary") else path
        heading_shown = " > ".join(shown)
        prefix = f"{doc.title} / {heading_shown}\n" if heading_shown else f"{doc.title}\n"
        budget = max(100, chunk_chars - len(prefix))
        for piece in _pack(text, budget, min(overlap, budget // 2)):
            full = prefix + piece
            h = hashlib.sha256(full.encode()).hexdigest()[:16]
            # ids are content-addressed so an edit re-embeds only the chunks it touched
            n = seen.get(h, 0)
            seen[h] = n + 1
            cid = f"{doc.source}{'#' + doc.part if doc.part else ''}::{h}" + (f"-{n}" if n else "")
            chunks.append(
                Chunk(cid, full, doc.source, doc.relpath, doc.title, heading, len(chunks), h, file_hash)
            )
    return chunks
