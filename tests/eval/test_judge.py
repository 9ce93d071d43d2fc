"""The judge (training/eval/judge.py): chrF on characters with a language check; never raises."""

from __future__ import annotations

import pytest

from training.eval.judge import LOWEST, Judge, judge, language

REF_ZH = "TiDB 支持二级索引。可以使用 CREATE INDEX 语句在表上创建二级索引，查询时优化器会自动选择合适的索引。"
REF_EN = (
    "TiDB Lightning imports large amounts of data into a TiDB cluster, for example from CSV or SQL files."
)


def test_closer_answers_score_higher_in_both_languages():
    j = Judge()
    for ref, answers in (
        (
            REF_ZH,
            [
                '{{< copyable "shell" >}}\n\n```shell\ntiup cluster display\n```',
                "TiDB 是一个分布式数据库。",
                "TiDB 支持二级索引，可以用 CREATE INDEX 创建。",
                REF_ZH,
            ],
        ),
        (
            REF_EN,
            [
                "I like turtles and the sea.",
                "TiDB is a distributed database.",
                "TiDB Lightning imports large amounts of data into TiDB.",
                REF_EN,
            ],
        ),
    ):
        scores = [j.score(a, ref).score for a in answers]
        assert scores == sorted(scores) and len(set(scores)) == len(scores), scores
        assert scores[0] >= 0 and scores[-1] == pytest.approx(1.0)


def test_another_language_or_nothing_gets_the_lowest_score():
    j = judge()
    # an English answer to a Chinese question shares "TiDB", "CREATE INDEX" with the reference: still lowest
    en = j.score("TiDB supports secondary indexes: use CREATE INDEX to create one.", REF_ZH, lang="zh")
    assert en.score == LOWEST and en.reason == "language" and en.lang == "en" and en.expected == "zh"
    assert j.score("TiDB 支持二级索引。", REF_EN).reason == "language"
    # the expected language is the question's when given, else the reference's
    assert j.score(REF_ZH, REF_ZH, lang="en").score == LOWEST
    for bad in ("", "   \n", None, 42, b"bytes", "```sql\nSELECT 1;\n```", "1 2 3 !!!"):
        out = j.score(bad, REF_ZH)
        assert out.score == LOWEST and out.reason in ("empty", "language"), (bad, out)
    assert j.score("TiDB 支持二级索引。", "").reason == "no reference"
    assert j.score("TiDB 支持二级索引。", None).score == LOWEST


def test_language_of_mixed_text():
    assert language(REF_ZH) == "zh"
    assert language(REF_EN) == "en"
    # identifiers inside code spans do not make Chinese prose English
    assert (
        language("使用 `tidb_gc_life_time_setting_value` 变量，见 https://docs.pingcap.com/zh/tidb/stable")
        == "zh"
    )
    assert language("See the page 使用 TiUP 部署 for the whole procedure of deploying a cluster.") == "en"
    assert language("```\nonly code\n```") is None


def test_signature_names_the_settings():
    sig = Judge().signature
    assert "nc:6" in sig, sig
    assert "nw:0" in sig and "lang:" in sig
