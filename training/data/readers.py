"""Streaming readers: every record comes with ``where`` (file:line) for one-line errors.

CPT: text/Markdown folders or files, and ``{"text"}`` JSONL.
SFT: OpenAI ``messages``, ShareGPT ``conversations``/``conversation`` (``from``/``value``), Alpaca
``instruction``/``input``/``output`` — all normalised to ``messages``.
DPO: ``prompt``/``chosen``/``rejected``, plain strings or message lists (kept as given).
KTO: ``prompt``/``completion``/``label`` (a boolean: the answer was rated up), unpaired.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.snapshot import SnapshotError, iter_jsonl

TEXT_SUFFIXES = {".md", ".markdown", ".txt"}
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "bot": "assistant",
}


class SchemaError(SnapshotError):
    pass


@dataclass(frozen=True)
class Record:
    where: str
    path: Path
    data: dict[str, Any]


def iter_files(source: Path | str) -> Iterator[Path]:
    source = Path(source)
    if source.is_file():
        yield source
    elif source.is_dir():
        for p in sorted(source.rglob("*")):
            if p.is_file() and (p.suffix.lower() in TEXT_SUFFIXES or p.suffix.lower() == ".jsonl"):
                yield p
    else:
        raise SnapshotError(f"data source not found: {source}")


def iter_text(source: Path | str) -> Iterator[Record]:
    """CPT documents: {"text": ...}; Markdown keeps its syntax (front matter is handled in clean)."""
    for path in iter_files(source):
        if path.suffix.lower() == ".jsonl":
            for n, row in iter_jsonl(path):
                if not isinstance(row.get("text"), str):
                    raise SchemaError(f"{path}:{n}: expected a string field 'text'")
                yield Record(f"{path}:{n}", path, {"text": row["text"]})
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise SchemaError(f"{path}:1: not UTF-8 text ({e.reason})") from None
            yield Record(f"{path}:1", path, {"text": text, "markdown": path.suffix.lower() != ".txt"})


def _messages(msgs: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(msgs, list) or not msgs:
        raise SchemaError(f"{where}: 'messages' must be a non-empty list")
    out = []
    for m in msgs:
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("content"), str)
            or m.get("role")
            not in (
                "system",
                "user",
                "assistant",
            )
        ):
            raise SchemaError(f"{where}: each message needs role system/user/assistant and string content")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def to_messages(row: dict[str, Any], where: str) -> list[dict[str, str]]:
    """Normalise one chat row (OpenAI / ShareGPT / Alpaca) to OpenAI messages."""
    if "messages" in row:
        msgs = _messages(row["messages"], where)
    elif "conversations" in row or "conversation" in row:
        conv = row.get("conversations", row.get("conversation"))
        if not isinstance(conv, list) or not conv:
            raise SchemaError(f"{where}: 'conversations' must be a non-empty list")
        msgs = []
        for turn in conv:
            role = SHAREGPT_ROLES.get(str(turn.get("from", "")).lower()) if isinstance(turn, dict) else None
            if role is None or not isinstance(turn.get("value"), str):
                raise SchemaError(f"{where}: ShareGPT turns need from (human/gpt/system) and string value")
            msgs.append({"role": role, "content": turn["value"]})
    elif "instruction" in row and "output" in row:
        prompt = str(row["instruction"])
        if row.get("input"):
            prompt += "\n\n" + str(row["input"])
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": str(row["output"])}]
        if row.get("system"):
            msgs.insert(0, {"role": "system", "content": str(row["system"])})
    else:
        raise SchemaError(
            f"{where}: unknown chat format (expected messages, conversations or instruction/output)"
        )
    if not any(m["role"] == "assistant" for m in msgs):
        raise SchemaError(f"{where}: conversation has no assistant turn")
    return msgs


def _jsonl_rows(source: Path | str) -> Iterator[tuple[str, Path, dict]]:
    """(``file:line``, file, row) of every JSONL file under ``source``."""
    for path in iter_files(source):
        if path.suffix.lower() == ".jsonl":
            for n, row in iter_jsonl(path):
                yield f"{path}:{n}", path, row


def iter_chat(source: Path | str) -> Iterator[Record]:
    for where, path, row in _jsonl_rows(source):
        yield Record(where, path, {"messages": to_messages(row, where)})


def _require(row: dict[str, Any], where: str, kind: str, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise SchemaError(f"{where}: {kind} rows need {'/'.join(keys)} (missing {', '.join(missing)})")


def _texts(row: dict[str, Any], where: str, keys: tuple[str, ...]) -> None:
    """Each of ``keys`` is a string or a message list (TRL's standard or conversational rows)."""
    for k in keys:
        v = row[k]
        if isinstance(v, list):
            _messages(v, where)
        elif not isinstance(v, str):
            raise SchemaError(f"{where}: {k} must be a string or a message list")


def iter_preference(source: Path | str) -> Iterator[Record]:
    keys = ("prompt", "chosen", "rejected")
    for where, path, row in _jsonl_rows(source):
        _require(row, where, "preference", keys)
        _texts(row, where, keys)
        yield Record(where, path, {k: row[k] for k in keys})


def iter_unpaired(source: Path | str) -> Iterator[Record]:
    keys = ("prompt", "completion", "label")
    for where, path, row in _jsonl_rows(source):
        _require(row, where, "unpaired", keys)
        if not isinstance(row["label"], bool):
            raise SchemaError(f"{where}: label must be true (desirable) or false (undesirable)")
        _texts(row, where, keys[:2])
        yield Record(where, path, {k: row[k] for k in keys})


def row_texts(row: dict[str, Any]) -> list[str]:
    """Every human-readable string in a row (for overlap checks against any eval format)."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            if "content" in v or "value" in v:
                walk(v.get("content", v.get("value")))
            else:
                for k, x in v.items():
                    if k not in ("id", "source", "title", "role", "from"):
                        walk(x)

    walk(row)
    return out


def iter_doc_summaries(source: Path | str) -> Iterator[Record]:
    """Chat rows built from Markdown front matter (title + summary), e.g. the TiDB docs.

    A ready-made SFT source from a documentation corpus: "what does <title> cover?" → its summary.
    """
    import re

    for path in iter_files(source):
        if path.suffix.lower() not in (".md", ".markdown"):
            continue
        head = path.read_text(encoding="utf-8")[:4000]
        m = re.match(r"\A---\s*\n(.*?)\n---", head, re.DOTALL)
        if not m:
            continue
        meta = dict(re.findall(r"^(title|summary):\s*(.+)$", m.group(1), re.MULTILINE))
        title, summary = (meta.get(k, "").strip().strip("'\"") for k in ("title", "summary"))
        if title and summary:
            yield Record(
                f"{path}:1",
                path,
                {
                    "title": title,
                    "messages": [
                        {"role": "user", "content": f"请简要介绍《{title}》这篇文档的内容。"},
                        {"role": "assistant", "content": summary},
                    ],
                },
            )
