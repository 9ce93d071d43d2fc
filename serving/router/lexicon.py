"""Product-name counts for the router: TiDB's own names and identifiers vs other products' names.

The message embedding alone puts "MySQL 主从复制延迟" next to TiDB replication questions (same words,
same domain); a count of the product names a message contains tells the linear classifier whose
product it is about. The lists live in data/lexicon.yaml (written from the labelling rules).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel

DEFAULT_LEXICON = Path(__file__).parent / "data" / "lexicon.yaml"
_WORD = re.compile(r"[a-z0-9][a-z0-9_.+\-]*[a-z0-9+]|[a-z0-9]")
_ASCII = re.compile(r"[a-z0-9_.+\- ]+")


class Lexicon(BaseModel):
    domain: list[str]
    other: list[str]


class _Matcher:
    def __init__(self, names: list[str]):
        names = [n.strip().lower() for n in names if n.strip()]
        self.words = {n for n in names if _ASCII.fullmatch(n) and " " not in n and not n.endswith("_")}
        self.prefixes = tuple(n for n in names if n.endswith("_") and " " not in n)
        self.phrases = [n for n in names if " " in n or not _ASCII.fullmatch(n)]

    def count(self, text: str, words: list[str]) -> int:
        def named(w: str) -> bool:
            if w in self.words or (self.prefixes and w.startswith(self.prefixes)):
                return True
            # a joined word also counts through its parts ("docker-compose.yml" → docker,
            # "raftstore.apply-pool-size" → raftstore); parts of 3+ letters, so "pd.read_csv" is no PD
            return any(p in self.words for p in re.split(r"[_.\-]+", w) if len(p) >= 3)

        n = sum(1 for w in words if named(w))
        return n + sum(1 for p in self.phrases if p in text)


class LexiconFeatures:
    """`features(text)` → [TiDB names, other products' names], each count capped at `cap`."""

    def __init__(self, lexicon: Lexicon, cap: int = 2):
        self.cap = cap
        self._domain = _Matcher(lexicon.domain)
        self._other = _Matcher(lexicon.other)

    def features(self, text: str) -> list[float]:
        t = text.lower()
        words = _WORD.findall(t)
        return [
            float(min(self.cap, self._domain.count(t, words))),
            float(min(self.cap, self._other.count(t, words))),
        ]


@lru_cache(maxsize=4)
def load_lexicon(path: Path | None = None) -> LexiconFeatures:
    p = Path(path) if path else DEFAULT_LEXICON
    return LexiconFeatures(Lexicon.model_validate(yaml.safe_load(p.read_text(encoding="utf-8"))))
