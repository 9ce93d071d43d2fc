"""SFT label mask: system/user/prompt tokens carry label -100, assistant tokens (all turns) do not."""

from __future__ import annotations

import pytest

from tests.training.conftest import CHAT
from training.chat_template import TemplateError, with_generation_markers


def test_derived_template_renders_like_the_original(base_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_model_dir)
    marked = with_generation_markers(tok.chat_template)
    assert "{% generation %}" in marked
    assert tok.apply_chat_template(CHAT, tokenize=False) == tok.apply_chat_template(
        CHAT, tokenize=False, chat_template=marked
    )
    with pytest.raises(TemplateError):
        with_generation_markers("{{ messages[0]['content'] }}")


def test_only_assistant_tokens_have_labels(base_model_dir, tiny_data, tmp_path):
    from training.config import SFTConfig
    from training.data.snapshot import load_snapshot
    from training.stages.common import RunPaths
    from training.stages.sft import build_trainer

    cfg = SFTConfig(
        model=str(base_model_dir),
        dataset=str(tiny_data["sft"]),
        output_dir=str(tmp_path / "o"),
        max_length=256,
    )
    trainer, tok, _ = build_trainer(
        cfg, RunPaths.for_output(tmp_path / "o"), load_snapshot(tiny_data["sft"]).train
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    trained = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100])
    masked = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab == -100])
    # both assistant turns are learned, with their end-of-turn token
    assert (
        trained == "TiDB is a distributed SQL database.<|im_end|>Yes, it speaks the MySQL protocol.<|im_end|>"
    )
    # system prompt, both user turns and the role headers carry no loss
    for text in (
        "You answer questions about TiDB.",
        "What is TiDB?",
        "Is it MySQL compatible?",
        "<|im_start|>assistant",
    ):
        assert text in masked
        assert text not in trained
