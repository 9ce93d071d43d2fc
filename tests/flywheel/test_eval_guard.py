"""Mined rows never carry evaluation data: the guard covers every set the gates use, and is on by default.

Real evaluation data (shared/data: MMLU, CMMLU, the domain FAQ, general valid) in a temp DuckDB file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from keel.config import load_settings
from keel.cycle.eval_guard import DEMO_DATA, gate_sets
from keel.cycle.mining import run_mining
from keel.store.db import Database

from flywheel.overlap import ContainmentIndex
from tests.flywheel.planted import feedback, request
from tests.prereq import missing


def _first_row(path: Path, header: bool) -> list[str]:
    with path.open(encoding="utf-8") as f:
        rows = csv.reader(f)
        if header:
            next(rows)
        return next(rows)


def _leaks(data: Path) -> dict[str, tuple[str, str]]:
    """(user message, answer) per set: each carries one evaluation item the way a user would paste it."""
    mmlu = _first_row(data / "mmlu" / "test" / "anatomy_test.csv", header=False)
    cmmlu = _first_row(data / "cmmlu" / "test" / "agronomy.csv", header=True)
    faq = json.loads((data / "domain" / "tidb-docs-zh" / "faq_qa.jsonl").read_text().splitlines()[3])
    general = json.loads((data / "general" / "en" / "valid.jsonl").read_text().splitlines()[5])["text"]
    return {
        "mmlu": (f"Can you help with my homework?\n{mmlu[0]}\nA. {mmlu[1]}\nB. {mmlu[2]}", "A, I think."),
        "cmmlu": (f"请回答这道题：{cmmlu[1]} A {cmmlu[2]} B {cmmlu[3]}", "答案是 A。"),
        "domain": ("这个问题怎么处理？", "文档里是这样说的：" + faq["answer"]),
        "general": ("Tell me something interesting.", "Here is a summary. " + general),
    }


@pytest.fixture
def log_with_leaks(tmp_path, shared_data):
    """Each leak rated up and also edited in (so it would become a pair and SFT examples), one clean row."""

    def make(*overrides: str):
        settings = load_settings(overrides=[f"data_dir={tmp_path / 'data'}", *overrides])
        db = Database(settings.db_path)
        con = db.cursor()
        for n, (name, (question, answer)) in enumerate(_leaks(shared_data).items()):
            request(con, f"r-{name}", "k1", question, answer, 2 * n)
            feedback(con, f"f-{name}", f"r-{name}", "k1", "thumbs", 2 * n + 1, rating=1)
        request(con, "r-clean", "k1", "How do I add an index in TiDB?", "I do not know.", 20)
        feedback(con, "f-clean", "r-clean", "k1", "edit", 21, edited_text="Use CREATE INDEX idx ON t (c);")
        return settings, db

    yield make


def _used(db) -> set[str]:
    rows = db.fetchall(
        "SELECT provenance FROM pairs UNION ALL SELECT provenance FROM sft_examples "
        "UNION ALL SELECT provenance FROM kto_examples"
    )
    return {i for (p,) in rows for i in json.loads(p)["request_ids"]}


def test_pasted_benchmark_questions_and_heldout_text_never_enter_training(log_with_leaks, shared_data):
    settings, db = log_with_leaks(f"eval.data={shared_data}")
    st = run_mining(db, settings)["stats"]
    assert set(st["eval_guard"]) == {"mmlu", "cmmlu", "domain", "general"}
    assert all(n > 0 for n in st["eval_guard"].values())
    assert _used(db) == {"r-clean"}
    assert st["dropped_eval_overlap"] == 8  # each leak's SFT example and its KTO example
    db.close()


def test_the_guard_can_be_switched_off_and_then_lets_them_through(log_with_leaks, shared_data):
    settings, db = log_with_leaks(f"eval.data={shared_data}", "mining.eval_guard=false")
    st = run_mining(db, settings)["stats"]
    assert st["eval_guard"] == {} and not st.get("dropped_eval_overlap")
    assert _used(db) == {"r-mmlu", "r-cmmlu", "r-domain", "r-general", "r-clean"}
    db.close()


def test_default_settings_guard_the_demo_evaluation_data(tmp_path):
    if not DEMO_DATA.is_dir():
        missing("no shared/data beside this checkout")
    sets = gate_sets(load_settings(overrides=[f"data_dir={tmp_path}"]).eval)
    assert set(sets) == {"mmlu", "cmmlu", "domain", "general"}
    assert sets["mmlu"] == DEMO_DATA / "mmlu"


def test_containment_ignores_spacing_and_finds_passages_of_long_texts():
    index = ContainmentIndex()
    question = "Which of the following structures is derived from the third pharyngeal pouch?"
    page = " ".join(f"Sentence number {i} of a long held-out page, with its own words." for i in range(40))
    index.add(question, "q")
    index.add(page, "page")
    index.add("Yes.", "short")
    assert index.too_short == 1
    assert index.find("please answer:\n" + question.upper().replace(" ", "  ") + "\nA. thymus") == "q"
    assert index.find("I read: " + page[700:900] + " ...") == "page"  # any 128+ char passage
    assert index.find("Which of the following structures is derived from the second arch?") is None
    assert index.find("Yes.") is None
