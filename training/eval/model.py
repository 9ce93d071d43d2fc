"""Load a checkpoint folder for scoring: fp32 on CPU (the safe dtype on every CPU), eval mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ScoringModel:
    model: Any
    tokenizer: Any
    path: Path

    @property
    def max_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def prefix_token_id(self) -> int:
        """The token that conditions the first real token, as lm-eval's rolling loglikelihood does."""
        tok = self.tokenizer
        for t in (tok.bos_token_id, tok.eos_token_id):
            if t is not None:
                return int(t)
        return 0


def load_scoring_model(path: Path, device: str = "cpu") -> ScoringModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
    model.eval()
    return ScoringModel(model, tokenizer, Path(path))
