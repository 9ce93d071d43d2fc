"""Perplexity: agrees with the model's own loss, windows cover every token once, and training lowers it."""

from __future__ import annotations

import math

import pytest
import torch

from training.eval.model import ScoringModel, load_scoring_model
from training.eval.perplexity import PerplexityConfig, _windows, score_texts, summarize

TEXT = (
    "Keel 是一个面向领域大模型的持续改进平台。它记录每一个请求，挖掘反馈，训练新的检查点，"
    "并且只有在评测门禁通过之后才会把新模型切换上线。The gate compares the candidate with the served model."
)


@pytest.mark.parametrize(("n", "window", "stride"), [(10, 4, 2), (100, 16, 5), (7, 64, 32), (33, 8, 8)])
def test_windows_score_every_token_once(n, window, stride):
    ids = list(range(n))
    segs = _windows(ids, window, stride)
    scored = []
    for w, k in segs:
        assert len(w) <= window
        scored.extend(w[len(w) - k :])
    assert scored == ids[1:]


def test_matches_model_loss_and_sliding_window(scoring_model):
    sm = scoring_model
    ids = [sm.prefix_token_id(), *sm.tokenizer(TEXT, add_special_tokens=False).input_ids]
    with torch.inference_mode():
        loss = float(sm.model(torch.tensor([ids]), labels=torch.tensor([ids])).loss)
    (rec,) = score_texts(sm, [TEXT], PerplexityConfig(window=1024))
    assert rec["tokens"] == len(ids) - 1 and rec["bytes"] == len(TEXT.encode())
    assert rec["nll"] / rec["tokens"] == pytest.approx(loss, rel=1e-4)
    # A small window sees less context: every token is still scored once, and the loss cannot be much lower.
    (small,) = score_texts(sm, [TEXT], PerplexityConfig(window=16, stride=8))
    assert small["tokens"] == rec["tokens"]
    assert small["nll"] > rec["nll"] * 0.95
    s = summarize([rec])
    assert s["ppl"] == pytest.approx(math.exp(loss), rel=1e-3)
    assert s["bpb"] == pytest.approx(rec["nll"] / math.log(2) / len(TEXT.encode()))


@pytest.mark.slow
def test_training_on_a_text_lowers_its_perplexity(base_model_dir):
    sm = load_scoring_model(base_model_dir)
    before = summarize(score_texts(sm, [TEXT]))["ppl"]
    model = sm.model
    model.train()
    ids = torch.tensor([[sm.prefix_token_id(), *sm.tokenizer(TEXT, add_special_tokens=False).input_ids]])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for _ in range(4):
        opt.zero_grad()
        model(ids, labels=ids).loss.backward()
        opt.step()
    model.eval()
    after = summarize(score_texts(ScoringModel(model, sm.tokenizer, sm.path), [TEXT]))["ppl"]
    assert after < before * 0.8, (before, after)


@pytest.mark.slow
@pytest.mark.parametrize(("window", "stride"), [(1024, 512), (24, 10)])
def test_vllm_backend_matches_transformers(scoring_model, vllm_scorer, window, stride):
    """Prompt log-probabilities on vLLM score the same windows as transformers, to the same losses: a
    text longer than the window is scored in several overlapping windows, each token exactly once."""
    texts = [TEXT, "Paris is the capital of France.", "北京是中华人民共和国的首都。" * 3]
    cfg = PerplexityConfig(window=window, stride=stride)
    mine = score_texts(None, texts, cfg, scorer=vllm_scorer)
    ref = score_texts(scoring_model, texts, cfg)
    for m, r in zip(mine, ref, strict=True):
        assert m["tokens"] == r["tokens"] and m["bytes"] == r["bytes"]
        assert m["nll"] == pytest.approx(r["nll"], rel=1e-3)
    if window == 24:  # the long text really went through several windows
        n = len(scoring_model.tokenizer(TEXT, add_special_tokens=False).input_ids)
        assert n > 2 * window and mine[0]["tokens"] == n


@pytest.mark.slow
def test_vllm_prompt_logprobs_refuses_a_prompt_past_the_context(vllm_scorer):
    with pytest.raises(ValueError, match="needs 2"):
        vllm_scorer.prompt_logprobs([[1] * (vllm_scorer.max_length + 1)])
