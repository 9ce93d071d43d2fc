"""bf16 is autocast over fp32 master weights; `auto` turns it on only where bf16 is native."""

from __future__ import annotations

import pytest

from training.config import RecipeError, make_config
from training.stages.common import load_model, use_bf16


def test_bf16_accepts_auto_and_rejects_other_words():
    assert make_config("cpt", {"bf16": "auto"}).bf16 == "auto"
    assert make_config("cpt", {"bf16": "true"}).bf16 is True
    with pytest.raises(RecipeError, match="bf16"):
        make_config("cpt", {"bf16": "sometimes"})


def test_auto_follows_the_hardware():
    import torch

    from training.eval.model import cpu_has_fast_bf16

    native = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_has_fast_bf16()
    assert use_bf16(make_config("cpt", {"bf16": "auto"})) is native
    assert use_bf16(make_config("cpt", {"bf16": True})) is True
    assert use_bf16(make_config("cpt", {})) is False


def test_bf16_training_keeps_fp32_weights(base_model_dir):
    """Weights held in bf16 would round most AdamW updates away (8-bit mantissa)."""
    import torch

    model = load_model(str(base_model_dir), make_config("cpt", {"bf16": True}))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
