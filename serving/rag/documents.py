"""Read Markdown, plain-text and JSONL files into documents; anything unreadable is an `InputError`."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from keelcommon.jsonl import iter_jsonl
from serving.errors import ServingError

MARKDOWN = {".md", ".markdown", ".mdx"}
TEXT = {".txt", ".text", ".rst"}
JSONL = {".jsonl"}
SUPPORTED = MARKDOWN | TEXT | JSONL

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.S)


class InputError(ServingError, ValueError):
    """A file that cannot be indexed; the message names the file (and line) in one line."""


@dataclass
class Document:
    """One logical document: a whole Markdown/text file, or one JSONL line."""

    source: str  # absolute path of the file
    relpath: str  # path relative to the folder it was found under (how people name docs)
    kind: str  # markdown | text | jsonl
    text: str
    title: str = ""
    part: str = ""  # "L12" for the 12th JSONL line
    meta: dict = field(default_factory=dict)


@dataclass
class SourceFile:
    """A file found under an indexing root, with the hash that decides whether it changed."""

    path: Path
    relpath: str
    sha256: str
    data: bytes


def discover(roots: Iterable[Path], skipped: list[tuple[Path, str]] | None = None) -> list[SourceFile]:
    """Every supported file under the given paths, read and hashed. A path that does not exist or names an
    unsupported file is an InputError; a file that cannot be read goes to `skipped` as (resolved path,
    "path: why") when given, else it is an InputError too."""
    found: dict[str, SourceFile] = {}
    for root in roots:
        root = Path(root).expanduser()
        if not root.exists():
            raise InputError(f"{root}: no such file or folder")
        if root.is_file():
            if root.suffix.lower() not in SUPPORTED:
                raise InputError(f"{root}: unsupported file type (use .md, .txt or .jsonl)")
            files = [(root, root.name)]
        else:
            files = [
                (p, p.relative_to(root).as_posix())
                for p in sorted(root.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in SUPPORTED
                and not any(s.startswith(".") for s in p.relative_to(root).parts)
            ]
            if not files:
                raise InputError(f"{root}: no .md, .txt or .jsonl files found")
        for path, rel in files:
            try:
                data = path.read_bytes()
            except OSError as e:
                why = f"{path}: cannot read ({e.strerror or type(e).__name__})"
                if skipped is None:
                    raise InputError(why) from e
                skipped.append((path.resolve(), why))
                continue
            found[str(path.resolve())] = SourceFile(
                path.resolve(), rel, hashlib.sha256(data).hexdigest(), data
            )
    return list(found.values())


def _decode(f: SourceFile) -> str:
    if not f.data.strip():
        raise InputError(f"{f.path}: empty file")
    if b"\x00" in f.data[:8192]:
        raise InputError(f"{f.path}: binary file (contains NUL bytes)")
    try:
        return f.data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{f.path}: not UTF-8 text (byte {e.start})") from e


def split_front_matter(text: str) -> tuple[dict, str]:
    """YAML front matter (if any) and the body after it. Unparseable front matter is kept as body."""
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, text
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError:
        return {}, text
    return (meta if isinstance(meta, dict) else {}), text[m.end() :]


_TEMPLATE_VAR = re.compile(r"\{\{\{?\s*\.?([\w.-]+)\s*\}?\}\}")
_GENERIC = {
    "概览",
    "概述",
    "简介",
    "介绍",
    "目录",
    "索引",
    "overview",
    "introduction",
    "intro",
    "index",
    "toc",
    "readme",
    "contents",
}
_INDEX_STEMS = {"_index", "index", "readme", "toc"}


def _humanise(relpath: str) -> str:
    """'tidb-lightning/_index.md' → 'tidb lightning'; 'br/br-pitr-guide.md' → 'br / br pitr guide'."""
    parts = [p for p in relpath.split("/") if p]
    if not parts:
        return ""
    stem = parts[-1].rsplit(".", 1)[0]
    if stem.lower() in _INDEX_STEMS and len(parts) > 1:  # an index page is named by its folder
        parts, stem = parts[:-2], parts[-2]
    else:
        parts = parts[:-1]
    words = [re.sub(r"[-_]+", " ", p).strip() for p in [*parts[-1:], stem] if p]
    return " / ".join(w for w in words if w) or stem


def meaningful_title(title: str, relpath: str) -> str:
    """A title a person can read in a list of sources: template variables kept as their names
    ("创建 {{{ .starter }}} 实例" → "创建 starter 实例"), a missing title from the file's place, and a
    generic one ("概览", "Overview") with the file's place beside it."""
    t = _TEMPLATE_VAR.sub(lambda m: m.group(1).split(".")[-1], title).strip()
    t = re.sub(r"\s+", " ", t)
    place = _humanise(relpath)
    if not t:
        return place
    if t.lower() in _GENERIC or len(t) <= 1:
        return f"{t} ({place})" if place else t
    return t


def read(f: SourceFile) -> Iterator[Document]:
    """The documents in one file."""
    text = _decode(f)
    suffix = f.path.suffix.lower()
    src = str(f.path)
    if suffix in MARKDOWN:
        meta, body = split_front_matter(text)
        title = str(meta.get("title") or "").strip()
        if not title:
            # the first heading of any level (a page may start at ##); else the file's place
            h = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", body, re.M)
            title = h.group(1).strip() if h else ""
        title = meaningful_title(title, f.relpath)
        yield Document(
            src, f.relpath, "markdown", body, title, meta={"summary": str(meta.get("summary") or "")}
        )
    elif suffix in TEXT:
        yield Document(src, f.relpath, "text", text, meaningful_title("", f.relpath))
    else:
        seen = 0
        for lineno, obj in iter_jsonl(f.path, InputError, text=text):
            if not isinstance(obj.get("text"), str) or not obj["text"].strip():
                raise InputError(f'{f.path}:{lineno}: expected an object with a non-empty "text" string')
            seen += 1
            title = str(obj.get("title") or f"{f.path.stem} line {lineno}")
            yield Document(src, f.relpath, "jsonl", obj["text"], title, part=f"L{lineno}")
        if not seen:
            raise InputError(f"{f.path}: no JSON lines")
