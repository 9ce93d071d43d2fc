"""Text normalisation and MinHash signatures: what exact and near-duplicate checks compare.

Mining (near-identical prompts) and data preparation (dedup) use these same functions, so "the same
text" means one thing across the flywheel and training.
"""

from __future__ import annotations

import re

from datasketch import MinHash

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Whitespace runs folded to one space, trimmed, lower case."""
    return _WS.sub(" ", text).strip().lower()


def minhash(text: str, num_perm: int = 128, k: int = 5) -> MinHash:
    """The MinHash of the normalised text's character ``k``-grams: works for Chinese (no spaces) and
    English alike."""
    t = normalise(text)
    m = MinHash(num_perm=num_perm)
    m.update_batch([g.encode("utf-8") for g in {t[i : i + k] for i in range(max(1, len(t) - k + 1))}])
    return m
