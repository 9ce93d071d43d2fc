"""JSON Lines in, one object per line, every error naming ``path:line``.

Blank lines are skipped; a line that is not JSON, or not a JSON object, fails with the file and line
number, as the error type the caller names (each package has its own one-line error).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class JsonlError(ValueError):
    """A JSONL file that cannot be read as rows; the message starts with ``path:line``."""


def iter_jsonl(
    path: Path | str, error: type[Exception] = JsonlError, *, text: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of ``path`` (or of ``text``, already read from
    ``path``); a malformed line raises ``error("path:line: ...")``."""
    # lines end at "\n" only: a JSON string may hold U+2028 and friends, which str.splitlines would split
    with io.StringIO(text, newline="\n") if text is not None else Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{path}:{n}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise error(f"{path}:{n}: expected a JSON object")
            yield n, row


def _reason(e: Exception, expected: str) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):  # a pydantic ValidationError: its first error, where and what
        first = (errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    if isinstance(e, KeyError | TypeError) or not str(e):
        return f"expected {expected} ({type(e).__name__}: {e})" if expected else f"{type(e).__name__}: {e}"
    return str(e)


def read_jsonl(
    path: Path | str,
    parse: Callable[[dict[str, Any]], T],
    *,
    error: type[Exception] = JsonlError,
    expected: str = "",
    what: str = "rows",
) -> list[T]:
    """``parse(row)`` for every row; a file with none is an error too.

    ``parse`` may raise ValueError with the reason (a pydantic ValidationError included) or fail on a
    missing key or a wrong type (reported as "expected <expected>"); either way the error names
    ``path:line``.
    """
    out = []
    for n, row in iter_jsonl(path, error):
        try:
            out.append(parse(row))
        except (KeyError, TypeError, ValueError) as e:
            raise error(f"{path}:{n}: {_reason(e, expected)}") from e
    if not out:
        raise error(f"{path}: no {what}")
    return out
