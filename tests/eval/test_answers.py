"""The answers suite: prompts frozen by the platform with serving's routing graph over a real index, two
real checkpoints answering them greedily, the judge's scores compared by the gate, answers side by side."""

from __future__ import annotations

import json

import pytest

from tests.eval.test_cli import _candidate, _served_copy
from training.eval.answers import load_prompts
from training.eval.data import EvalDataError
from training.eval.gates import GatePolicy, GateRule, decide, delta

# Held-out FAQ rows about the small index's four docs (tests/rag/corpus.py), and two that do not fit.
FAQ = [
    (
        "GC 是做什么的？",
        "TiDB 采用 MVCC 控制并发，GC 的任务是清理不再需要的旧数据版本，由 GC leader 定期触发。",
    ),
    (
        "误删的表如何恢复？",
        "在 GC life time 之内，可以使用 FLASHBACK TABLE 语句恢复被 DROP 或 TRUNCATE 删除的表。",
    ),
    (
        "如何查看 TiDB 支持的存储引擎？",
        "可以执行 SHOW ENGINES 语句查看存储引擎的信息，TiDB 中只有 InnoDB 一项，用于兼容 MySQL。",
    ),
    (
        "TiKV 如何存储数据？",
        "TiKV 是一个分布式的 Key-Value 存储引擎，数据以 Region 为单位分片，通过 Raft 协议复制多副本。",
    ),
    ("太短？", "是。"),
    ("What is TiDB?", "TiDB is an open-source distributed SQL database that supports hybrid workloads well."),
]


@pytest.fixture
def settings(tmp_path, small_index):
    from keel.config import load_settings

    domain = tmp_path / "domain"
    domain.mkdir()
    rows = [{"id": i, "question": q, "answer": a, "source": "faq/x.md"} for i, (q, a) in enumerate(FAQ)]
    (domain / "faq_qa.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    over = [f"data_dir={tmp_path / 'keel-data'}", f"rag.index_dir={small_index[1]}", f"eval.domain={domain}"]
    return load_settings(overrides=over)


@pytest.fixture
def short_context(settings):
    """Less retrieved text per prompt (serving's own setting): a real prompt is ~1,600 tokens of prefill,
    which a loaded 2-core box turns into minutes per checkpoint."""
    return settings.model_copy(
        update={"router": settings.router.model_copy(update={"max_context_chars": 300})}
    )


def test_frozen_prompts_are_what_serving_builds(settings, tmp_path):
    from keel.cycle.answers_prompts import freeze_prompts

    out = tmp_path / "prompts.jsonl"
    res = freeze_prompts(settings, out, n=10)
    ps = load_prompts(out)
    assert res["n"] == len(ps.prompts) == 4 and res["sha256"] == ps.sha256  # the two misfits left out
    for p in ps.prompts:
        system, user = p.messages
        assert user == {"role": "user", "content": p.question}
        # the domain route's template with retrieved chunks, answering in the question's language
        assert (
            system["role"] == "system"
            and "Documents:" in system["content"]
            and "Chinese" in system["content"]
        )
        assert p.sampling == {"repetition_penalty": 1.2}  # the domain route's sampling default
    # freezing again gives the same bytes: both checkpoints of a cycle see identical prompts
    assert freeze_prompts(settings, tmp_path / "again.jsonl", n=10)["sha256"] == res["sha256"]
    assert freeze_prompts(settings, tmp_path / "two.jsonl", n=2)["n"] == 2


def test_english_questions_join_the_frozen_prompts_and_stay_out_of_the_simulation(settings, tmp_path):
    """eval.answers_en_questions adds the platform's English domain questions: prompted to answer in English,
    fixed by the seed, and none of them (nor their references) among the simulation's questions, which the
    feedback lift trains on or reports."""
    from keel.cycle.answers_prompts import ENGLISH_QUESTIONS, freeze_prompts, select_english
    from keel.simulate.traffic import load_questions

    out = tmp_path / "prompts.jsonl"
    res = freeze_prompts(settings, out, n=10, n_en=5)
    ps = load_prompts(out)
    assert (res["n"], res["n_en"]) == (9, 5)
    english = [p for p in ps.prompts if p.lang == "en"]
    assert len(english) == 5 and all(p.id.startswith("en-") for p in english)
    assert all("Answer in English." in p.messages[0]["content"] for p in english)
    assert [p.id for p in english] == [r["id"] for r in select_english(5, seed=0)]
    assert select_english(5, seed=1) != select_english(5, seed=0)
    assert freeze_prompts(settings, tmp_path / "none.jsonl", n=10, n_en=0)["n_en"] == 0
    every = select_english(1000)
    assert len(every) == len(ENGLISH_QUESTIONS.read_text().splitlines()) >= 12
    bank = load_questions(None)
    asked = {q.question.strip().lower() for q in bank} | {(q.reference or "").strip() for q in bank}
    assert not [r["id"] for r in every if r["question"].strip().lower() in asked or r["reference"] in asked]
    settings = settings.model_copy(
        update={"eval": settings.eval.model_copy(update={"answers_en_questions": 3})}
    )
    assert freeze_prompts(settings, tmp_path / "three.jsonl", n=10)["n_en"] == 3  # the setting's default


@pytest.mark.slow
def test_answers_suite_scores_two_checkpoints_on_identical_prompts(short_context, base_model_dir, tmp_path):
    from keel.cycle.answers_prompts import freeze_prompts

    from training.eval.compare import compare_checkpoints
    from training.eval.runner import EvalConfig, run_eval

    prompts = tmp_path / "prompts.jsonl"
    freeze_prompts(short_context, prompts, n=3)
    base = _served_copy(base_model_dir, tmp_path / "base")
    cand = _candidate(base_model_dir, tmp_path / "cand")
    cfg = EvalConfig(
        suite="answers", answers=prompts, answers_max_tokens=16, backend="transformers", threads=2
    )
    runs = {name: run_eval(ck, cfg).result for name, ck in (("base", base), ("cand", cand))}
    for ev in runs.values():
        a = ev["answers"]
        assert ev["complete"] and ev["missing"] == [] and "mmlu" not in ev
        assert a["sha256"] == load_prompts(prompts).sha256 and a["summary"]["n"] == 3
        for item in a["items"]:
            assert 0 < item["tokens"] <= 16 and item["answer"].strip() and 0 <= item["score"] <= 1
            assert item["prompt_tokens"] > 100  # the system prompt with the chunks was rendered
    # the candidate's weights differ, so at least one greedy answer differs; both on the same questions
    b_items, c_items = (r["answers"]["items"] for r in (runs["base"], runs["cand"]))
    assert [i["id"] for i in b_items] == [i["id"] for i in c_items]
    assert [i["answer"] for i in b_items] != [i["answer"] for i in c_items]

    policy = GatePolicy(
        require_significance=True,
        gates={"answers": GateRule(metric="answers.score", max_drop_points=0.0)},
    )
    out = compare_checkpoints(cand, base, cfg, policy)  # reuses both eval JSONs (same fingerprint)
    [row] = out.decision["gates"]
    assert row["n"] == 3 and row["metric"] == "answers.score"
    mean = lambda items: 100 * sum(i["score"] for i in items) / len(items)  # noqa: E731
    assert row["delta"] == pytest.approx(mean(c_items) - mean(b_items))
    html = out.report.read_text(encoding="utf-8")
    assert 'id="answers"' in html and c_items[0]["question"] in html

    # other prompts are another fingerprint: an eval of these is never reused for those
    other = tmp_path / "other.jsonl"
    freeze_prompts(short_context, other, n=2)
    other_cfg = EvalConfig(suite="answers", answers=other, answers_max_tokens=16, backend="transformers")
    assert other_cfg.fingerprint() != cfg.fingerprint()


def _ev(scores, sha="s", judge="j"):
    items = [{"id": f"q{i}", "score": s} for i, s in enumerate(scores)]
    return {"answers": {"sha256": sha, "judge": judge, "items": items}, "complete": True, "fingerprint": "f"}


def test_the_summary_splits_by_question_language():
    from training.eval.answers import summarize

    items = [
        {"lang": "zh", "score": 0.3, "reason": None},
        {"lang": "zh", "score": 0.1, "reason": None},
        {"lang": "en", "score": 0.0, "reason": "language"},
    ]
    s = summarize(items)
    assert (s["n"], round(s["score"], 4), s["other_language"]) == (3, 0.1333, 1)
    assert s["by_language"]["zh"]["n"] == 2 and round(s["by_language"]["zh"]["score"], 4) == 0.2
    assert s["by_language"]["en"] == {
        "n": 1,
        "score": 0.0,
        "other_language": 1,
        "empty": 0,
        "length_capped": 0,
    }


def test_answers_gate_is_not_significantly_worse():
    policy = GatePolicy(
        require_significance=True, gates={"answers": GateRule(metric="answers.score", max_drop_points=0.0)}
    )
    base = _ev([0.2, 0.3, 0.1, 0.25] * 5)
    assert decide(_ev([0.21, 0.32, 0.12, 0.24] * 5), base, policy)["passed"]
    worse = decide(_ev([0.1, 0.1, 0.05, 0.1] * 5), base, policy)
    assert not worse["passed"] and worse["gates"][0]["ci"][1] < 0
    noisy = decide(_ev([0.25, 0.2, 0.1, 0.25] * 5), base, policy)  # a drop that is not significant
    assert noisy["passed"], noisy["gates"]
    assert (
        "judged with different settings"
        in delta(_ev([0.2] * 20, judge="x"), base, "answers.score", policy)["error"]
    )
    assert "answers missing" in delta({"complete": True}, base, "answers.score", policy)["error"]
    other = decide(_ev([0.2, 0.3, 0.1, 0.25] * 5, sha="t"), base, policy)  # other prompts: never compared
    assert not other["passed"] and "different prompts" in other["gates"][0]["reason"]


@pytest.mark.parametrize(
    "line, msg",
    [
        ('{"id": 1, "question": "q", "reference": "r"}', "missing field 'messages'"),
        ("{not json", "malformed JSON"),
        ('{"id": 1, "question": "q", "reference": "r", "messages": ["x"]}', "list of chat messages"),
    ],
)
def test_bad_prompts_files_are_one_line_errors(tmp_path, line, msg):
    f = tmp_path / "p.jsonl"
    f.write_text(line + "\n")
    with pytest.raises(EvalDataError, match=msg) as e:
        load_prompts(f)
    assert "\n" not in str(e.value)
    with pytest.raises(EvalDataError, match="not found"):
        load_prompts(tmp_path / "missing.jsonl")


def test_the_cycle_freezes_its_prompts_once_and_evaluate_and_gate_agree(settings, tmp_path):
    """The cycle's wiring (platform/keel/cycle/steps.py): no prompts until evaluate freezes them in the
    cycle folder; then every eval config of the cycle (evaluate, gate) names them with one fingerprint."""
    from types import SimpleNamespace

    from keel.cycle.steps import ANSWERS_PROMPTS, PlatformSteps

    from flywheel.cycle_config import CycleConfig

    steps = PlatformSteps(settings, None, None, None)
    ctx = SimpleNamespace(
        cycle_id="c1", config=CycleConfig.model_validate({"eval": {"answers_questions": 2}})
    )
    assert steps.eval_config(ctx).answers is None
    res = steps._freeze_answers(ctx, steps.cycle_dir("c1") / ANSWERS_PROMPTS, 2)
    first, again = steps.eval_config(ctx), steps.eval_config(ctx)
    assert first.answers == steps.cycle_dir("c1") / ANSWERS_PROMPTS and res["n"] == 2
    assert first.fingerprint() == again.fingerprint() and load_prompts(first.answers).sha256 == res["sha256"]
    off = SimpleNamespace(cycle_id="c2", config=CycleConfig.model_validate({}))
    assert steps.eval_config(off).answers is None  # answers_questions defaults to 0: no suite


@pytest.mark.slow
def test_vllm_and_transformers_give_the_same_greedy_answers(vllm_scorer, scoring_model):
    """The two eval backends answer a frozen prompt alike (fp32, greedy, the domain route's penalty), so an
    answers eval means the same whichever engine ran it."""
    from training.eval.answers import AnswerPrompt, generate

    system = "You are the TiDB documentation assistant. Answer in Chinese.\nDocuments:\n[1] GC\n" + FAQ[0][1]
    p = AnswerPrompt(
        "q",
        FAQ[0][0],
        "zh",
        FAQ[0][1],
        [{"role": "system", "content": system}, {"role": "user", "content": FAQ[0][0]}],
        {"repetition_penalty": 1.2},
    )
    [v] = generate(None, vllm_scorer, [p], 16)
    [t] = generate(scoring_model, None, [p], 16)
    assert v["prompt_tokens"] == t["prompt_tokens"] and v["tokens"] > 0
    assert v["text"] == t["text"], (v, t)
