"""Load a checkpoint folder for scoring, on CPU, in eval mode.

The body runs in the chosen dtype (bf16 halves the matmul cost where the CPU has native bf16 dot
products); the final projection to the vocabulary always runs in fp32 from an fp32 copy of the output
embedding, so letter log-probabilities and perplexities keep full precision at the last step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DType = Literal["auto", "float32", "bfloat16"]


def cpu_has_fast_bf16() -> bool:
    """oneDNN reports native bf16 (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower than fp32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(dtype: DType) -> Literal["float32", "bfloat16"]:
    if dtype == "auto":
        return "bfloat16" if cpu_has_fast_bf16() else "float32"
    return dtype


def prefix_token_id(tokenizer) -> int:
    """The token that conditions the first real token, as lm-eval's rolling loglikelihood does."""
    for t in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if t is not None:
            return int(t)
    return 0


@dataclass
class ScoringModel:
    model: Any
    tokenizer: Any
    path: Path
    dtype: str = "float32"
    head_weight: Any = None  # fp32 (vocab, hidden); None: the model's own head

    @property
    def max_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def prefix_token_id(self) -> int:
        return prefix_token_id(self.tokenizer)

    def project(self, hidden):
        """fp32 logits for hidden states (..., hidden) from the decoder body."""
        if self.head_weight is None:
            return self.model.get_output_embeddings()(hidden).float()
        return hidden.float() @ self.head_weight.T


def load_scoring_model(path: Path, device: str = "cpu", dtype: DType = "float32") -> ScoringModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = resolve_dtype(dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
    model.eval()
    head = model.get_output_embeddings()
    head_weight = None
    if name != "float32" and head is not None and getattr(head, "bias", None) is None:
        head_weight = head.weight.detach().clone().float()  # copy before the cast (tied embeddings)
        model = model.to(getattr(torch, name))
    return ScoringModel(
        model, tokenizer, Path(path), name if head_weight is not None else "float32", head_weight
    )
