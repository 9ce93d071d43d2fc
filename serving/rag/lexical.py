"""BM25 over the chunk catalog (bm25s), with a tokenizer for Chinese prose full of English identifiers.

Chinese has no spaces, so CJK runs become character unigrams + bigrams (the classic CJK n-gram
indexing: no dictionary, no model, robust to domain terms a word segmenter does not know). ASCII runs
keep identifiers whole (`tidb_mem_quota_query`, `pd.schedule`) and also add their parts, so
"mem quota" in an English question still meets the variable name.
"""

from __future__ import annotations

import re

import bm25s
import numpy as np

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*[A-Za-z0-9]|[A-Za-z0-9]|[\u3400-\u9fff\uf900-\ufaff]+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_PARTS = re.compile(r"[_.\-]+")
# Function words that carry no topic; bigrams keep phrases like "是否" searchable anyway.
_STOP_ZH = set("的了是在和与及或也就都而把被让对从到为以于这那个之其么吗呢吧啊哪")
_STOP_EN = set(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "for",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "with",
        "as",
        "by",
        "at",
        "from",
        "how",
        "what",
        "which",
        "who",
        "whom",
        "why",
        "when",
        "where",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "i",
        "you",
        "we",
        "they",
        "he",
        "she",
        "my",
        "your",
        "our",
        "their",
        "me",
        "us",
        "them",
        "if",
        "then",
        "than",
        "so",
        "not",
        "no",
        "yes",
        "there",
        "here",
        "about",
        "into",
        "via",
        "use",
        "using",
    ]
)


def _stem(word: str) -> str:
    """Plural -s only: "resources"/"resource", "indexes"/"index" meet; anything more would guess."""
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss") and word[-2] not in "u":
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    out: list[str] = []
    for tok in _TOKEN.findall(text):
        if _CJK.match(tok):
            chars = [c for c in tok]
            out.extend(c for c in chars if c not in _STOP_ZH)
            out.extend(a + b for a, b in zip(chars, chars[1:], strict=False))
            continue
        low = tok.lower()
        parts = [p for p in _PARTS.split(low) if p]
        if low not in _STOP_EN:
            out.append(_stem(low) if len(parts) == 1 else low)
        if len(parts) > 1:
            out.extend(_stem(p) for p in parts if p not in _STOP_EN)
    return out


class LexicalIndex:
    """An in-memory BM25 index over chunk ids; rebuilt from the catalog in seconds, so never persisted."""

    def __init__(self, ids: list[str], texts: list[str], k1: float = 1.5, b: float = 0.5):
        self.ids = list(ids)
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        if self.ids:
            self._bm25.index([tokenize(t) or ["\u2400"] for t in texts], show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """Best `k` (id, bm25 score) pairs; documents with score 0 (no shared token) are left out."""
        toks = tokenize(query)
        if not self.ids or not toks:
            return []
        scores = self._bm25.get_scores(toks)
        k = min(k, len(self.ids))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]
