"""bf16 is autocast over fp32 master weights; `auto` turns it on only where bf16 is native."""

from __future__ import annotations

import pytest

from training.config import RecipeError, make_config, native_bf16
from training.stages.common import load_model


def test_bf16_auto_follows_the_hardware_and_other_words_are_refused():
    import torch

    from training.eval.model import cpu_has_fast_bf16

    native = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_has_fast_bf16()
    assert native_bf16() is native
    assert make_config("cpt", {"bf16": "auto"}).bf16 is native
    assert make_config("cpt", {"bf16": "true"}).bf16 is True
    assert make_config("cpt", {}).bf16 is False
    with pytest.raises(RecipeError, match="bf16"):
        make_config("cpt", {"bf16": "sometimes"})


def test_bf16_training_keeps_fp32_weights(base_model_dir):
    """Weights held in bf16 would round most AdamW updates away (8-bit mantissa); the Trainer's bf16 is
    autocast over the fp32 weights load_model returns."""
    import torch

    model = load_model(str(base_model_dir))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
