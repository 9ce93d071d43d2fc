"""Judged simulated users (platform/keel/simulate/users.py, traffic.py): the user model on fixed answers,
and the simulator's reactions against a fake gateway (unit tests of the logic around the real gateway,
which tests/flywheel/test_serving_to_training.py drives for real)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import Counter

import httpx
import pytest
from keel.simulate.traffic import (
    Behaviour,
    Question,
    SimulateError,
    Simulator,
    answer_text,
    load_questions,
)
from keel.simulate.users import UserModel, user_rng

from training.eval.judge import judge

REF = "TiDB Lightning 是一个将全量数据高速导入到 TiDB 集群的工具，支持 Dumpling、CSV 或 Amazon Aurora Parquet 输出格式的数据源。"
ANSWERS = [  # further from the reference → closer to it
    "TiDB Lightning is a tool that imports data into TiDB clusters.",  # another language
    '{{< copyable "shell" >}}\n\n```shell\ntiup cluster display\n```',
    "TiDB 是一个分布式数据库，兼容 MySQL 协议。",
    "TiDB Lightning 是一个导入数据的工具。",
    "TiDB Lightning 是将全量数据高速导入到 TiDB 集群的工具，支持 CSV 等格式的数据源。",
    REF,
]


def test_thumbs_down_probability_falls_as_the_answer_approaches_the_reference():
    um = UserModel()
    scores = [judge().score(a, REF, lang="zh").score for a in ANSWERS]
    assert scores == sorted(scores) and len(set(scores[1:])) == len(scores) - 1, scores
    p_down = [um.p_thumbs_down(s) for s in scores]
    assert all(a > b for a, b in itertools.pairwise(p_down[1:])), p_down
    assert p_down[0] == max(p_down) and p_down[0] > 0.5 > p_down[-1], p_down
    assert [um.p_edit(s) for s in scores] == sorted((um.p_edit(s) for s in scores), reverse=True)
    # what users actually do (seeded draws) follows the probabilities
    rates = []
    for s in scores:
        acts = [um.react(s, user_rng(7, n)) for n in range(3000)]
        rates.append(sum(a.thumb == "down" for a in acts) / len(acts))
        assert all(a.thumb is None or (a.thumb == "up") == a.satisfied for a in acts)
        assert not any(a.edit and a.satisfied for a in acts)
    assert all(a > b for a, b in itertools.pairwise(rates[1:])), rates
    assert rates[-1] < rates[0] * 0.2, rates


def test_a_users_draws_depend_on_the_seed_and_arrival_only():
    um = UserModel()
    one = [um.react(0.2, user_rng(3, n)) for n in range(50)]
    assert one == [um.react(0.2, user_rng(3, n)) for n in range(50)]
    assert one != [um.react(0.2, user_rng(4, n)) for n in range(50)]


def test_the_shipped_bank_has_seen_and_held_out_questions():
    seen, held = load_questions(None, "seen"), load_questions(None, "held_out")
    assert len(load_questions(None, "all")) == len(seen) + len(held)
    assert {q.kind for q in held} == {"domain"} and all(q.reference for q in held)
    seen_text = {q.question for q in seen}
    assert not seen_text & {q.question for q in held}
    paraphrases = [q for q in held if q.paraphrase_of]
    others = [q for q in held if not q.paraphrase_of]
    assert paraphrases and others
    for q in paraphrases:  # a paraphrase rewords a seen question and keeps its reference
        orig = next(s for s in seen if s.question == q.paraphrase_of)
        assert orig.reference == q.reference and orig.source == q.source
    assert {q.lang for q in held} == {"zh", "en"}
    with pytest.raises(SimulateError, match="--split"):
        load_questions(None, "train")


def test_a_file_without_a_split_is_seen_and_a_split_with_no_questions_is_an_error(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"kind": "domain", "lang": "en", "question": "What is TiDB?"}) + "\n")
    assert [q.split for q in load_questions(f, "seen")] == ["seen"]
    with pytest.raises(SimulateError, match="no held_out questions"):
        load_questions(f, "held_out")
    f.write_text(json.dumps({"kind": "domain", "question": "x", "split": "test"}) + "\n")
    with pytest.raises(SimulateError, match=r"q.jsonl:1: split"):
        load_questions(f)


def test_answer_text_drops_the_gateways_sources_list():
    assert answer_text("TiDB 支持。[1]\n\nSources:\n[1] 概览 (overview.md)") == "TiDB 支持。[1]"
    assert answer_text("no sources here") == "no sources here"


class FakeGateway:
    """Answers each question with ``answer(question)``, streamed or not, with a Sources tail, after a random
    delay of up to ``delay`` s; records feedback."""

    def __init__(self, answer, delay: float = 0.0, seed: int = 0):
        self.answer = answer
        self.ids = itertools.count()
        self.asked: dict[str, str] = {}
        self.first_asks: list[str] = []  # questions in the order they were first sent (not regenerations)
        self.feedback: list[dict] = []
        self.users: dict[str, str] = {}  # request id → the body's `user`
        self.delay, self.rng = delay, random.Random(seed)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path != "/v1/feedback" and "x-keel-regenerate-of" not in request.headers:
            self.first_asks.append(body["messages"][-1]["content"])
        await asyncio.sleep(self.rng.random() * self.delay)
        if request.url.path == "/v1/feedback":
            self.feedback.append(body)
            return httpx.Response(200, json={"ok": True})
        rid = f"r{next(self.ids)}"
        self.users[rid] = body.get("user")
        q = body["messages"][-1]["content"]
        self.asked[rid] = q
        text = self.answer(q) + "\n\nSources:\n[1] 概览 (overview.md)"
        headers = {"x-request-id": rid}
        if body.get("stream"):
            half = len(text) // 2
            events = [{"choices": [{"delta": {"content": t}}]} for t in (text[:half], text[half:])]
            sse = (
                "".join(f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events) + "data: [DONE]\n\n"
            )
            return httpx.Response(200, content=sse.encode(), headers=headers)
        return httpx.Response(200, json={"choices": [{"message": {"content": text}}]}, headers=headers)


def _run(answer, behaviour=None, seed=5, questions=None, delay=0.0, delay_seed=0, split="seen"):
    qs = questions or [
        Question(kind="domain", lang="zh", question="TiDB Lightning 是什么？", reference=REF, split=split)
    ]
    gw = FakeGateway(answer, delay, delay_seed)
    sim = Simulator(
        "http://gw", "key", qs, behaviour or Behaviour(), seed=seed, transport=httpx.MockTransport(gw)
    )
    asyncio.run(sim.run(rate=300, duration=2.0))
    return sim, gw


def test_judged_users_rate_good_answers_up_and_edit_bad_ones_with_the_reference():
    good, gw_good = _run(lambda q: REF)
    bad, gw_bad = _run(lambda q: "TiDB Lightning imports data into TiDB.")  # right content, wrong language
    sg, sb = good.report.summary("t", 1)["judge"]["seen"], bad.report.summary("t", 1)["judge"]["seen"]
    assert sg["n"] > 40 and sb["n"] > 40
    assert sg["score"] == pytest.approx(1.0) and sb["score"] == 0 and sb["other_language"] == sb["n"]
    assert sg["thumbs_down_rate"] < 0.05 < 0.4 < sb["thumbs_down_rate"]
    assert sb["thumbs_down_ci"][0] > sg["thumbs_down_ci"][1]
    assert sg["edit_rate"] < sb["edit_rate"]
    kinds = Counter(f["type"] + f.get("rating", "") for f in gw_bad.feedback)
    assert kinds["edit"] and kinds["regenerate"] and kinds["thumbsdown"]
    assert all(f["edited_text"] == REF for f in gw_bad.feedback if f["type"] == "edit")
    for f in gw_bad.feedback:  # every regeneration asks the same question again, linked to the first answer
        if f["type"] == "regenerate":
            assert gw_bad.asked[f["new_request_id"]] == gw_bad.asked[f["request_id"]]
    # regenerated answers are rated, and kept out of the first-answer rates
    regen = [r for r in bad.report.judged if r["regenerated"]]
    assert regen and all(r["thumb"] in ("up", "down") for r in regen)
    # each arrival is one simulated person (OpenAI's `user`), and a regeneration is the same person
    users = {rid: u for rid, u in gw_bad.users.items()}
    assert len(set(users.values())) > 40
    for f in gw_bad.feedback:
        if f["type"] == "regenerate":
            assert users[f["new_request_id"]] == users[f["request_id"]]
    # every judged answer's score goes back as `score` feedback (what a running canary compares)
    for sim, gw in ((good, gw_good), (bad, gw_bad)):
        scores = {f["request_id"]: f["score"] for f in gw.feedback if f["type"] == "score"}
        assert scores == {r["request_id"]: r["score"] for r in sim.report.judged}


def test_held_out_questions_are_judged_but_never_fed_back():
    """Nothing a held-out question leaves may reach mining: its reactions are recorded, not posted."""
    held, gw = _run(lambda q: "TiDB Lightning imports data into TiDB.", split="held_out")
    s = held.report.summary("t", 1)["judge"]["held_out"]
    assert s["n"] > 40 and s["thumbs_down_rate"] > 0.4 and s["edit_rate"] > 0  # what users would have done
    assert gw.feedback == [] and held.report.feedback == {}
    assert not [r for r in held.report.judged if r["regenerated"]]  # nor asked again
    seen, gw_seen = _run(lambda q: "TiDB Lightning imports data into TiDB.")
    assert {f["type"] for f in gw_seen.feedback} >= {"thumbs", "edit", "regenerate"}


def test_same_seed_same_feedback_and_judge_off_keeps_fixed_rates():
    a, _ = _run(lambda q: "TiDB Lightning 是一个导入数据的工具。", seed=11)
    b, _ = _run(lambda q: "TiDB Lightning 是一个导入数据的工具。", seed=11)
    # the same arrival gets the same reactions, whatever order the answers came back in
    ra, rb = ({r["arrival"]: r for r in x.report.judged if not r["regenerated"]} for x in (a, b))
    common = sorted(set(ra) & set(rb))
    assert len(common) > 30
    key = lambda r: (r["thumb"], r["edit"], r["regenerate"])  # noqa: E731
    assert [key(ra[n]) for n in common] == [key(rb[n]) for n in common]
    assert len({key(ra[n]) for n in common}) > 1
    off, gw = _run(lambda q: "TiDB Lightning imports data.", Behaviour(judge=False))
    assert not off.report.judged and off.report.summary("t", 1)["judge"] is None
    ups = sum(f.get("rating") == "up" for f in gw.feedback if f["type"] == "thumbs")
    assert ups > 0  # the fixed rates rate some answers up whatever they say


def test_a_seed_fixes_the_question_sequence_whatever_the_answer_times():
    """The same judged simulation before and after a cycle asks the same questions in the same order."""
    qs = load_questions(None, "all")
    runs = [
        _run(lambda q: "TiDB 是一个分布式数据库。", seed=9, questions=qs, delay=0.02, delay_seed=d)[1]
        for d in (1, 2)
    ]
    a, b = (gw.first_asks for gw in runs)
    n = min(len(a), len(b))
    assert n > 30 and a[:n] == b[:n]
    assert len(set(a[:n])) > 20  # many different questions, not one repeated
