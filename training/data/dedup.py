"""Near-duplicate detection with MinHash LSH (datasketch).

Shingles are character 5-grams over whitespace-normalised text, which works for Chinese (no word
boundaries) and English alike. Only signatures are kept in memory, so the corpus itself can stream.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from datasketch import MinHash, MinHashLSH

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


def exact_key(text: str) -> str:
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()


def minhash(text: str, num_perm: int = 128, k: int = 5) -> MinHash:
    t = normalise(text)
    m = MinHash(num_perm=num_perm)
    grams = {t[i : i + k] for i in range(max(1, len(t) - k + 1))}
    m.update_batch([g.encode("utf-8") for g in grams])
    return m


@dataclass
class NearDupIndex:
    """Exact + near-duplicate membership. ``add_if_new`` is the streaming dedup primitive."""

    threshold: float = 0.9
    num_perm: int = 128
    _lsh: MinHashLSH = field(init=False)
    _exact: dict[str, str] = field(default_factory=dict, init=False)
    _n: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)

    def __len__(self) -> int:
        return self._n

    def find(self, text: str, sig: MinHash | None = None) -> str | None:
        """The key of an indexed text that ``text`` duplicates (exactly or nearly), else None."""
        hit = self._exact.get(exact_key(text))
        if hit is not None:
            return hit
        sig = sig or minhash(text, self.num_perm)
        for entry in self._lsh.query(sig):
            return entry.rsplit("#", 1)[
                0
            ]  # LSH entries are "<key>#<n>" (keys may repeat); callers gave <key>
        return None

    def add(self, text: str, key: str, sig: MinHash | None = None) -> None:
        self._exact.setdefault(exact_key(text), key)
        self._lsh.insert(f"{key}#{self._n}", sig or minhash(text, self.num_perm))
        self._n += 1

    def add_if_new(self, text: str, key: str) -> str | None:
        """Index ``text`` unless it duplicates something already there; returns the duplicate's key."""
        sig = minhash(text, self.num_perm)
        dup = self.find(text, sig)
        if dup is None:
            self.add(text, key, sig)
        return dup


def dedup(texts, threshold: float = 0.9) -> list[int]:
    """Indexes of the texts to keep (first occurrence wins)."""
    index = NearDupIndex(threshold)
    return [i for i, t in enumerate(texts) if index.add_if_new(t, str(i)) is None]
