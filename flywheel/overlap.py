"""Evaluation leakage by containment: does a mined text contain an evaluation item, or a passage of one?

A user who pastes an MMLU question into the chat adds words around it ("please answer: ..."), so a
near-duplicate test of whole texts (MinHash) misses it. Here every evaluation text is squashed
(lower case, letters and digits only, so spacing, punctuation and line breaks do not matter) and cut
into pieces: a short text (a question) is one piece, a long one (an FAQ page, a held-out document) is cut
into consecutive windows of ``piece_chars``. A mined text overlaps when it contains a whole piece. Any
contained passage of at least ``2 * piece_chars`` squashed characters therefore covers a full window.
Lookup is one dict probe per position of the mined text (pieces are keyed by their first
``key_chars`` characters), so checking is linear in the mined text whatever the size of the sets.
"""

from __future__ import annotations

import unicodedata


def squash(text: str) -> str:
    """Lower-case letters and digits only (CJK characters are letters)."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower() if c.isalnum())


class ContainmentIndex:
    def __init__(self, min_chars: int = 16, piece_chars: int = 64, key_chars: int = 12):
        if not key_chars <= min_chars <= piece_chars:
            raise ValueError("need key_chars <= min_chars <= piece_chars")
        self.min_chars, self.piece_chars, self.key_chars = min_chars, piece_chars, key_chars
        self._pieces: dict[str, list[tuple[str, str]]] = {}
        self.texts = 0
        self.pieces = 0
        self.too_short = 0  # evaluation texts too short to be evidence of leakage ("Yes.")

    def __len__(self) -> int:
        return self.pieces

    def add(self, text: str, where: str) -> None:
        s = squash(text)
        if len(s) < self.min_chars:
            self.too_short += 1
            return
        self.texts += 1
        if len(s) <= 2 * self.piece_chars:
            pieces = [s]
        else:  # the last window is kept only when long enough to mean something
            pieces = [s[i : i + self.piece_chars] for i in range(0, len(s), self.piece_chars)]
            pieces = [p for p in pieces if len(p) >= self.min_chars]
        for p in pieces:
            self._pieces.setdefault(p[: self.key_chars], []).append((p, where))
            self.pieces += 1

    def find(self, text: str) -> str | None:
        """Where the first evaluation piece contained in ``text`` comes from, or None."""
        s = squash(text)
        k = self.key_chars
        for i in range(len(s) - self.min_chars + 1):
            for piece, where in self._pieces.get(s[i : i + k], ()):
                if s.startswith(piece, i):
                    return where
        return None
