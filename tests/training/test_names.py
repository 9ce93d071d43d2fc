"""Person-name scrubbing with the optional detector (Presidio + spaCy, the `names` extra)."""

from __future__ import annotations

import json

import pytest

from tests.training.conftest import write_jsonl
from training.data.names import NameDetectorError, NameScrubber, looks_like_name, prose_spans
from training.data.pii import Scrubber
from training.data.prepare import make_prepare_config, prepare

# TiDB-doc shaped text the small English NER model tags as PERSON when it sees it unguarded
TIDB = (
    "使用 TiUP 部署 TiKV 和 TiFlash 节点，并通过 Grafana 与 Prometheus 监控。\n\n"
    "```sql\nCREATE USER 'jennifer'@'%';\nCREATE TABLE t (a VARCHAR(255), b INT);\n```\n\n"
    "Use `tiup cluster display` to check TiUP Cluster status, then run `SAVEPOINT svp1`.\n\n"
    "goroutineID=42 Txn 1 conflicts with Txn 2 on PRIMARY KEY(a).\n\n"
    "# Load Base Split\n\n"
    "    Mar 14 16:55:03 localhost kernel: Hardware name: QEMU Standard PC\n"
)


@pytest.fixture(scope="module")
def names() -> NameScrubber:
    pytest.importorskip("presidio_analyzer", reason="the `names` extra is not installed")
    return NameScrubber().load()


@pytest.mark.slow  # loads the spaCy pipeline (~30 s on the shared cores)
def test_planted_names_are_replaced(names):
    text = (
        "The release was reviewed by Alice Johnson and Robert Miller before Maria Garcia signed it off.\n\n"
        "Contact Mr. David Chen, who wrote the original design notes."
    )
    s = Scrubber(extra=[names])
    out = s.scrub(text)
    for planted in ("Alice Johnson", "Robert Miller", "Maria Garcia", "David Chen"):
        assert planted not in out
    assert out.count("<NAME>") == s.counts["name"] >= 4
    assert "release was reviewed by" in out  # the rest of the sentence is kept


@pytest.mark.slow  # loads the spaCy pipeline (~30 s on the shared cores)
def test_tidb_identifiers_are_left_alone(names):
    out, n = names(TIDB)
    assert (out, n) == (TIDB, 0)


def test_guards_without_the_model():
    assert not prose_spans("```\nAlice Johnson\n```")
    assert not prose_spans("用户 Alice Johnson 登录")  # CJK paragraph: skipped
    assert prose_spans("Alice Johnson wrote this.") == [(0, 25)]
    assert looks_like_name("Alice Johnson") and looks_like_name("J. R. Smith")
    assert not any(map(looks_like_name, ["TiUP", "goroutineID", "VARCHAR(255", "Txn 1", "jennifer'@'%"]))


@pytest.mark.slow  # loads the spaCy pipeline (~30 s on the shared cores)
def test_prepare_counts_names_in_stats(names, tmp_path):
    src = write_jsonl(
        tmp_path / "chat.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "Who approved the TiDB upgrade plan last week?"},
                    {"role": "assistant", "content": "Alice Johnson approved the upgrade plan last week."},
                ]
            }
        ],
    )
    cfg = {"kind": "sft", "sources": [str(src)], "pii_names": True, "min_chars": 5}
    snap = prepare(make_prepare_config({**cfg, "output": str(tmp_path / "snap")}))
    assert json.loads((snap.path / "stats.json").read_text())["pii"] == {"name": 1}
    assert "Alice" not in (snap.path / "train.jsonl").read_text()


def test_missing_model_is_one_line_and_writes_nothing(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", [{"text": "Alice Johnson wrote this long enough line."}])
    cfg = {"sources": [str(src)], "pii_names": True, "pii_names_model": "no_such_spacy_model"}
    with pytest.raises(NameDetectorError) as e:
        prepare(make_prepare_config({**cfg, "output": str(tmp_path / "snap")}))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "snap").exists()
