"""Letter scoring against a straightforward reference: lm-eval's per-choice loglikelihood, done by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.eval.conftest import write_cmmlu, write_mmlu
from training.eval.data import LETTERS, MCBenchmark, MCItem, load_benchmark
from training.eval.mc import MCScoreConfig, score_benchmark, score_prompts, summarize
from training.eval.prompts import build_prompt


def reference_logprobs(sm, prompt: str) -> np.ndarray:
    """lm-eval style: run context + " X" for each letter and sum the continuation's log-probs."""
    tok = sm.tokenizer
    ctx = tok(prompt, add_special_tokens=False).input_ids
    out = []
    with torch.inference_mode():
        for letter in LETTERS:
            whole = tok(prompt + " " + letter, add_special_tokens=False).input_ids
            cont = whole[len(ctx) :]
            logits = sm.model(torch.tensor([whole])).logits[0].float()
            lp = torch.log_softmax(logits, -1)
            out.append(sum(float(lp[len(ctx) - 1 + k, t]) for k, t in enumerate(cont)))
    return np.array(out)


@pytest.mark.parametrize("shots", [0, 5])
def test_scores_equal_reference(tmp_path, scoring_model, shots):
    bench = load_benchmark(write_mmlu(tmp_path / "mmlu", subjects=("anatomy",)), "mmlu")
    s = bench.subjects["anatomy"]
    # 5-shot prompts are long and the reference runs each four times: three questions are enough there.
    prompts = [build_prompt(bench, s, item, shots) for item in s.test[: 5 if shots == 0 else 3]]
    # A small token budget forces several batches with different padding and prefix-cache reuse.
    fast = score_prompts(scoring_model, prompts, MCScoreConfig(shots=shots, batch_tokens=200))
    ref = np.stack([reference_logprobs(scoring_model, p) for p in prompts])
    np.testing.assert_allclose(fast, ref, atol=2e-4)


def test_planted_accuracy(tmp_path, scoring_model):
    """Plant answers: half agree with the model's argmax, half do not → accuracy is exactly known."""
    bench = load_benchmark(write_cmmlu(tmp_path / "cmmlu", subjects=("agronomy",)), "cmmlu")
    s = bench.subjects["agronomy"]
    # The letter scores themselves are checked against the reference above; here the bookkeeping is.
    lp = score_prompts(scoring_model, [build_prompt(bench, s, it, 0) for it in s.test], MCScoreConfig())
    ref_pred = [int(np.argmax(row)) for row in lp]
    planted = [
        MCItem(it.id, it.subject, it.question, it.choices, p if k % 2 == 0 else (p + 1) % 4)
        for k, (it, p) in enumerate(zip(s.test, ref_pred, strict=True))
    ]
    s.test = planted
    records = score_benchmark(
        scoring_model, MCBenchmark("cmmlu", "planted", {"agronomy": s}), MCScoreConfig()
    )
    expected = sum(1 for k in range(len(planted)) if k % 2 == 0) / len(planted)
    summary = summarize(bench, records)
    assert summary["overall"]["acc"] == pytest.approx(expected)
    assert summary["categories"]["Other"]["n"] == len(planted)
    for r, p in zip(records, ref_pred, strict=True):
        assert r["pred"] == LETTERS[p]
        lp = np.array(r["logprobs"])
        probs = np.exp(lp) / np.exp(lp).sum()
        assert r["p_correct"] == pytest.approx(probs[LETTERS.index(r["answer"])], abs=1e-5)
