"""keelcommon.jsonl: every error names path:line, as the caller's error type."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, Field

from keelcommon.jsonl import JsonlError, iter_jsonl, read_jsonl


class Planted(ValueError):
    pass


def test_a_bad_line_names_its_file_and_line(tmp_path):
    says = {
        "{not json": "malformed JSON (Expecting property name",
        "[1, 2]": "expected a JSON object",
        '"text"': "expected a JSON object",
    }
    for i, bad in enumerate(says):
        f = tmp_path / f"rows{i}.jsonl"
        f.write_text('{"a": 1}\n\n' + bad + '\n{"a": 2}\n', encoding="utf-8")
        rows = iter_jsonl(f, Planted)
        assert next(rows) == (1, {"a": 1})  # rows stream: the good line comes before the bad one fails
        with pytest.raises(Planted) as e:
            next(rows)
        assert str(e.value).startswith(f"{f}:3: {says[bad]}")


def test_text_already_read_is_split_on_newlines_only(tmp_path):
    """A JSON string may hold U+2028 unescaped; it is not a line break (str.splitlines would split there)."""
    f = tmp_path / "docs.jsonl"
    text = '{"text": "a\u2028b"}\n{"text": "c"}\n'
    assert list(iter_jsonl(f, text=text)) == [(1, {"text": "a\u2028b"}), (2, {"text": "c"})]
    with pytest.raises(JsonlError, match=rf"^{re.escape(str(f))}:2: malformed JSON"):
        list(iter_jsonl(f, text='{"text": "a"}\n{\n'))


class Item(BaseModel):
    kind: str = Field(pattern="^(domain|chat)$")
    question: str


@pytest.mark.parametrize(
    "line, says",
    [
        ('{"kind": "other", "question": "q"}', "kind: String should match pattern"),  # pydantic
        ('{"kind": "chat"}', "question: Field required"),
    ],
)
def test_read_jsonl_names_the_line_of_a_row_its_parser_refuses(tmp_path, line, says):
    f = tmp_path / "q.jsonl"
    f.write_text('{"kind": "chat", "question": "hi"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(Planted, match=rf"^{re.escape(str(f))}:2: {says}"):
        read_jsonl(f, Item.model_validate, error=Planted)


def test_read_jsonl_says_what_was_expected_and_what_is_empty(tmp_path):
    f = tmp_path / "labelled.jsonl"
    f.write_text('{"text": "hi", "intent": "chat"}\n{"text": "no intent"}\n', encoding="utf-8")
    pair = lambda d: (d["text"], d["intent"])  # noqa: E731
    with pytest.raises(
        JsonlError, match=rf"^{re.escape(str(f))}:2: expected a labelled row \(KeyError: 'intent'\)"
    ):
        read_jsonl(f, pair, expected="a labelled row")

    def refuse(d):
        raise ValueError(f"unknown intent {d['intent']!r}")

    f.write_text('{"text": "hi", "intent": "x"}\n', encoding="utf-8")
    with pytest.raises(JsonlError, match=rf"^{re.escape(str(f))}:1: unknown intent 'x'$"):
        read_jsonl(f, refuse, expected="a labelled row")
    f.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(JsonlError, match=rf"^{re.escape(str(f))}: no messages$"):
        read_jsonl(f, pair, what="messages")
    f.write_text('{"text": "hi", "intent": "chat"}\n', encoding="utf-8")
    assert read_jsonl(f, pair) == [("hi", "chat")]
