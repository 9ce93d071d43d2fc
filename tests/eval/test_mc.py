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


def test_bf16_body_keeps_fp32_projection_and_stays_close(tmp_path, scoring_model, base_model_dir):
    """bf16 runs the decoder body only: the vocabulary projection reads an fp32 copy of the head, and
    letter log-probabilities stay near the fp32 ones (bf16 has ~3 significant digits per activation)."""
    from training.eval.model import load_scoring_model

    sm16 = load_scoring_model(base_model_dir, dtype="bfloat16")
    assert sm16.dtype == "bfloat16" and sm16.head_weight.dtype == torch.float32
    assert next(sm16.model.get_decoder().parameters()).dtype == torch.bfloat16
    bench = load_benchmark(write_mmlu(tmp_path / "mmlu", subjects=("anatomy",)), "mmlu")
    s = bench.subjects["anatomy"]
    prompts = [build_prompt(bench, s, item, 0) for item in s.test]
    lp16 = score_prompts(sm16, prompts, MCScoreConfig())
    lp32 = score_prompts(scoring_model, prompts, MCScoreConfig())
    assert lp16.dtype == np.float64 and np.isfinite(lp16).all()
    # Renormalised over the four letters (what accuracy and p_correct use), the two agree closely.
    p16 = np.exp(lp16) / np.exp(lp16).sum(1, keepdims=True)
    p32 = np.exp(lp32) / np.exp(lp32).sum(1, keepdims=True)
    np.testing.assert_allclose(p16, p32, atol=0.1)


@pytest.mark.slow
def test_vllm_backend_matches_transformers(tmp_path, scoring_model, vllm_scorer):
    """The vLLM backend (logprob_token_ids, one request per question) gives the same four log-probs."""
    bench = load_benchmark(write_mmlu(tmp_path / "mmlu", subjects=("anatomy",)), "mmlu")
    s = bench.subjects["anatomy"]
    prompts = [build_prompt(bench, s, item, shots) for shots in (0, 5) for item in s.test[:3]]
    lp_v = vllm_scorer.score_prompts(prompts)
    lp_t = score_prompts(scoring_model, prompts, MCScoreConfig())
    np.testing.assert_allclose(lp_v, lp_t, atol=2e-3)
    assert (lp_v.argmax(1) == lp_t.argmax(1)).all()


@pytest.mark.slow
def test_vllm_backend_scores_prompts_longer_than_2048_tokens(scoring_model, vllm_scorer):
    """5-shot MMLU prompts reach ~2,800 tokens: the engine takes the model's context, not a fixed 2,048."""
    filler = "The following are multiple choice questions (with answers) about anatomy. " * 200
    prompt = filler + "\nWhich organ pumps blood?\nA. Heart\nB. Lung\nC. Liver\nD. Skin\nAnswer:"
    n = len(scoring_model.tokenizer(prompt, add_special_tokens=False).input_ids)
    assert 2048 < n <= vllm_scorer.max_length
    lp_v = vllm_scorer.score_prompts([prompt])
    lp_t = score_prompts(scoring_model, [prompt], MCScoreConfig())
    np.testing.assert_allclose(lp_v, lp_t, atol=5e-3)
