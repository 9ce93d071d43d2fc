"""Tiny benchmark folders in every supported layout, written per test into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# the files as the benchmarks ship them: MMLU without a header, CMMLU with a header and an index column
MMLU_CSV = """\
What is 2 + 2?,4,3,None,NA,A
Which is a colour?,None,red,dog,NA,B
Pick the prime.,4,6,7,8,C
Which is not a number?,1,2,3,NA,D
Water freezes at (Celsius),0,10,50,100,A
"""
CMMLU_CSV = """\
,Question,A,B,C,D,Answer
0,中国的首都是,北京,上海,广州,深圳,A
1,一加一等于,三,二,四,五,B
2,水的化学式是,CO2,O2,H2O,NaCl,C
3,太阳从哪边升起,西,南,北,东,D
4,一年有几个月,十二,十,十一,九,A
"""
MMLU_ROWS = MMLU_CSV.count("\n")


def _write(root: Path, text: str, names) -> Path:
    for split in ("dev", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / split / name(split)).write_text(text, encoding="utf-8")
    return root


def write_mmlu(root: Path, subjects=("abstract_algebra", "anatomy")) -> Path:
    return _write(root, MMLU_CSV, [lambda split, s=s: f"{s}_{split}.csv" for s in subjects])


def write_cmmlu(root: Path, subjects=("agronomy", "anatomy")) -> Path:
    return _write(root, CMMLU_CSV, [lambda split, s=s: f"{s}.csv" for s in subjects])


def write_general(root: Path) -> Path:
    texts = {
        "en": ["The cat sat on the mat and looked at the garden.", "Paris is the capital of France."],
        "zh": ["北京是中华人民共和国的首都。", "长江是中国最长的河流。"],
    }
    for lang, rows in texts.items():
        (root / lang).mkdir(parents=True, exist_ok=True)
        (root / lang / "valid.jsonl").write_text(
            "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in rows), encoding="utf-8"
        )
    return root


DOMAIN_ANSWER = (
    "TiDB 支持二级索引。可以使用 CREATE INDEX 语句在表上创建二级索引，查询时优化器会自动选择合适的索引。"
)


def write_domain(root: Path) -> Path:
    (root / "docs" / "faq").mkdir(parents=True, exist_ok=True)
    (root / "docs" / "faq" / "sql-faq.md").write_text(
        f"# SQL FAQ\n\n## TiDB 是否支持二级索引？\n\n{DOMAIN_ANSWER}\n", encoding="utf-8"
    )
    (root / "docs" / "overview.md").write_text("# 概览\n\nTiDB 是分布式数据库。\n", encoding="utf-8")
    rows = [
        {
            "id": "q1",
            "question": "TiDB 是否支持二级索引？",
            "answer": DOMAIN_ANSWER,
            "source": "faq/sql-faq.md",
        }
    ]
    (root / "faq_qa.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return root


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    """A folder laid out like shared/data, with a few questions and texts per part."""
    root = tmp_path / "data"
    write_mmlu(root / "mmlu")
    write_cmmlu(root / "cmmlu")
    write_general(root / "general")
    write_domain(root / "domain" / "tidb")
    return root


@pytest.fixture(scope="module")
def scoring_model(base_model_dir):
    import torch

    from training.eval.model import load_scoring_model

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return load_scoring_model(base_model_dir)


@pytest.fixture(scope="package")
def vllm_scorer(base_model_dir):
    """One in-process vLLM engine for the eval tests that compare it with transformers (start ~30 s)."""
    from training.eval.vllm_backend import VLLMScorer

    scorer = VLLMScorer(base_model_dir, dtype="float32")
    yield scorer
    scorer.close()
