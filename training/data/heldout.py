"""Held-out protection: evaluation text is never trained on.

Two rules. By path: files whose path matches a held-out pattern (`faq` for the domain corpus) are
excluded from training. By content: every training row is checked against the evaluation sets,
exactly and by MinHash near-duplicate; any overlap is refused with the row's file:line.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path

from training.data.dedup import NearDupIndex
from training.errors import TrainingError


class OverlapError(TrainingError, ValueError):
    """A training row overlaps an evaluation set."""


def is_heldout_path(path: Path | str, patterns: Iterable[str] = ("*faq*",)) -> bool:
    p = str(path).lower()
    return any(
        fnmatch.fnmatch(p, f"*{pat.lower()}*") or fnmatch.fnmatch(Path(p).name, pat.lower())
        for pat in patterns
    )


class EvalGuard:
    """Index evaluation texts once, then check training rows against them."""

    def __init__(self, threshold: float = 0.9, min_chars: int = 20):
        self.index = NearDupIndex(threshold)
        self.min_chars = min_chars  # very short strings ("Yes.") are not evidence of leakage

    def add(self, text: str, where: str) -> None:
        if len(text.strip()) >= self.min_chars:
            self.index.add(text, where)

    def __len__(self) -> int:
        return len(self.index)

    def overlap(self, text: str) -> str | None:
        """Where ``text`` appears in the evaluation sets (exact or near), or None."""
        if len(text.strip()) < self.min_chars or not len(self.index):
            return None
        hit = self.index.find(text)
        return hit.split("#", 1)[0] if hit else None

    def check(self, text: str, where: str) -> None:
        hit = self.overlap(text)
        if hit is not None:
            raise OverlapError(f"{where}: training row overlaps evaluation set {hit}")
