"""Readers: both CSV layouts, Parquet/JSONL exports, literal "None"/"NA" options, one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.eval.conftest import MMLU_ROWS, write_cmmlu, write_mmlu
from training.checkpoint import CheckpointError, load_manifest
from training.eval.data import EvalDataError, gate_subset, load_benchmark
from training.eval.prompts import build_prompt


def test_mmlu_original_layout_keeps_none_and_na(tmp_path):
    bench = load_benchmark(write_mmlu(tmp_path / "mmlu"), "mmlu")
    assert list(bench.subjects) == ["abstract_algebra", "anatomy"]
    s = bench.subjects["abstract_algebra"]
    assert len(s.test) == MMLU_ROWS and len(s.dev) == MMLU_ROWS
    # pandas would turn these into NaN without keep_default_na=False
    assert s.test[0].choices == ("4", "3", "None", "NA")
    assert s.test[1].choices[0] == "None"
    assert [i.answer for i in s.test] == [0, 1, 2, 3, 0]
    assert s.display == "abstract algebra" and s.categories == ["STEM"]
    assert bench.subjects["anatomy"].categories == ["other (business, health, misc.)"]


def test_cmmlu_layout_with_header(tmp_path):
    bench = load_benchmark(write_cmmlu(tmp_path / "cmmlu"), "cmmlu")
    s = bench.subjects["agronomy"]
    assert s.display == "农学" and s.categories == ["Other"]
    assert s.test[2].question == "水的化学式是" and s.test[2].answer == 2
    prompt = build_prompt(bench, s, s.test[0], shots=0)
    assert (
        prompt
        == "以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n中国的首都是\nA. 北京\nB. 上海\nC. 广州\nD. 深圳\n答案："
    )


def test_real_files_parse(shared_data, tmp_path):
    # One real subject of each release, copied so the test stays fast.
    for bench_name, files in (
        ("mmlu", ["dev/college_computer_science_dev.csv", "test/college_computer_science_test.csv"]),
        ("cmmlu", ["dev/agronomy.csv", "test/agronomy.csv"]),
    ):
        for f in files:
            (tmp_path / bench_name / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / bench_name / f).write_bytes((shared_data / bench_name / f).read_bytes())
        bench = load_benchmark(tmp_path / bench_name, bench_name)
        (s,) = bench.subjects.values()
        assert len(s.dev) == 5 and len(s.test) >= 100
        assert all(c is not None and isinstance(c, str) for i in s.test for c in i.choices)
    cs = load_benchmark(tmp_path / "mmlu", "mmlu").subjects["college_computer_science"]
    # The real file has options whose text is literally "None" (FACTS.md): they must survive.
    assert sum(c == "None" for i in cs.test for c in i.choices) >= 2
    assert len({i.id for i in cs.test}) == len(cs.test)


def test_mmlu_prompt_matches_lm_eval_5shot(tmp_path):
    bench = load_benchmark(write_mmlu(tmp_path / "mmlu"), "mmlu")
    s = bench.subjects["abstract_algebra"]
    p = build_prompt(bench, s, s.test[2], shots=5)
    assert p.startswith(
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    )
    assert p.count("\nAnswer:") == 6 and "\nAnswer: A\n\nWhich is a colour?" in p
    assert p.endswith("Pick the prime.\nA. 4\nB. 6\nC. 7\nD. 8\nAnswer:")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_exports_with_choices_column(tmp_path, fmt):
    rows = [
        {"subject": "astronomy", "question": "Q1?", "choices": ["a", "None", "NA", "d"], "answer": 1},
        {
            "subject": "astronomy",
            "question": "Q2?",
            "choices": ["a", "b", "c", "d"],
            "answer": 3 if fmt == "parquet" else "D",
        },
        {"subject": "virology", "question": "Q3?", "choices": ["a", "b", "c", "d"], "answer": 0},
    ]
    folder = tmp_path / "export"
    folder.mkdir()
    df = pd.DataFrame(rows)
    if fmt == "parquet":
        df.to_parquet(folder / "test.parquet")
        df.iloc[:2].to_parquet(folder / "dev.parquet")
    else:
        (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    bench = load_benchmark(folder, "mmlu")
    assert sorted(bench.subjects) == ["astronomy", "virology"]
    a = bench.subjects["astronomy"]
    assert a.test[0].choices == ("a", "None", "NA", "d") and a.test[0].answer == 1 and a.test[1].answer == 3
    assert len(a.dev) == 2 and bench.subjects["virology"].dev == []
    single = load_benchmark(folder / f"test.{fmt}", "mmlu")
    assert single.n_test() == 3


def _break(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_input_names_the_file(tmp_path):
    root = write_cmmlu(tmp_path / "cmmlu")
    bad = _break(root / "test" / "anatomy.csv", ",Question,A,B,C,Answer\n0,q,a,b,c,A\n")
    with pytest.raises(EvalDataError, match=r"anatomy\.csv: missing column 'D'"):
        load_benchmark(root, "cmmlu")
    _break(bad, ",Question,A,B,C,D,Answer\n0,q,a,b,c,d,E\n")
    with pytest.raises(EvalDataError, match=r"anatomy\.csv: row 1: answer 'E' is not one of A-D"):
        load_benchmark(root, "cmmlu")
    _break(bad, "")
    with pytest.raises(EvalDataError, match=r"anatomy\.csv: no questions"):
        load_benchmark(root, "cmmlu")
    _break(bad, ",Question,A,B,C,D,Answer\n")
    with pytest.raises(EvalDataError, match=r"anatomy\.csv: no questions"):
        load_benchmark(root, "cmmlu")
    mroot = write_mmlu(tmp_path / "mmlu")
    _break(mroot / "test" / "anatomy_test.csv", "q,a,b,c,A\n")
    with pytest.raises(EvalDataError, match=r"anatomy_test\.csv: expected 6 columns"):
        load_benchmark(mroot, "mmlu")
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(CheckpointError, match=r"ckpt: no manifest\.json"):
        load_manifest(tmp_path / "ckpt")


def test_gate_subset_is_stratified_and_stable(tmp_path):
    bench = load_benchmark(write_mmlu(tmp_path / "mmlu"), "mmlu")
    a = gate_subset(bench, 3, seed=0)
    b = gate_subset(load_benchmark(tmp_path / "mmlu", "mmlu"), 3, seed=0)
    assert {k: [i.id for i in s.test] for k, s in a.subjects.items()} == {
        k: [i.id for i in s.test] for k, s in b.subjects.items()
    }
    assert all(len(s.test) == 3 for s in a.subjects.values())
    c = gate_subset(bench, 3, seed=1)
    assert any([i.id for i in c.subjects[k].test] != [i.id for i in a.subjects[k].test] for k in a.subjects)
