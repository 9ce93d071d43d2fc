"""Near-duplicate detection with MinHash LSH (datasketch).

Shingles are character 5-grams over whitespace-normalised text, which works for Chinese (no word
boundaries) and English alike. Only signatures are kept in memory, so the corpus itself can stream.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from datasketch import MinHash, MinHashLSH

from keelcommon.text import minhash, normalise


def exact_key(text: str) -> str:
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()


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
