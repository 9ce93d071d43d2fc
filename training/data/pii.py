"""PII scrubbing: emails, phone numbers, ID/card numbers, secrets/API keys → placeholders, with counts.

Regexes are checked (Luhn for cards, the checksum for Chinese resident IDs) so version strings and
long numbers in technical docs are not mangled. Person names need an NER model: the optional
`training.data.names.NameScrubber` (Presidio + spaCy) plugs in via ``Scrubber(extra=[...])``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
SECRET_PATTERNS = [
    re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b"),  # OpenAI-style
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),  # GitHub tokens
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),  # Slack
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API key
    re.compile(
        r"-----BEGIN (?:RSA |EC |OPENSSH )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA |EC |OPENSSH )?PRIVATE KEY-----"
    ),
]
# key = "value" assignments whose name says secret; the value is replaced, the name kept
SECRET_ASSIGN = re.compile(
    r"(?i)\b((?:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)\s*[:=]\s*[\"']?)"
    r"([A-Za-z0-9/+_.-]{16,})"
)
# Card numbers: issuer prefix (Visa, Mastercard, Amex, Discover/UnionPay) + Luhn, so 18-digit TSO
# timestamps and similar IDs in technical docs are left alone.
CARD = re.compile(r"(?<![\w-])(?:4|5[1-5]|2[2-7]|3[47]|6[025])\d{1,3}(?:[ -]?\d){8,15}(?![\w-])")
CARD_LENGTHS = {13, 15, 16, 19}
CN_ID = re.compile(
    r"(?<![\w-])[1-8]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![\w-])"
)
PHONE = re.compile(
    r"(?<![\w.=-])(?:"
    r"\+\d{1,3}[ -]?\(?\d{1,4}\)?[ -]?\d{3,4}[ -]?\d{3,4}"  # +1 (415) 555-0100, +86 10 1234 5678
    r"|\(\d{3}\) ?\d{3}-\d{4}"
    r"|\d{3}-\d{3}-\d{4}"
    r"|(?:\+?86[ -]?)?1[3-9]\d{9}"  # Chinese mobile
    r")(?![\w-])(?!\.\d)"
)


def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        alt = not alt
    return total % 10 == 0


def _card_ok(digits: str) -> bool:
    return len(digits) in CARD_LENGTHS and luhn_ok(digits)


def cn_id_ok(s: str) -> bool:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(c) * w for c, w in zip(s[:17], weights, strict=True)) % 11]
    return s[17].upper() == check


@dataclass
class Scrubber:
    """``scrub(text) -> text``; ``counts`` accumulates what was found, by kind."""

    extra: list[Callable[[str], tuple[str, int]]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def _sub(self, kind: str, pattern: re.Pattern, text: str, check=None, repl=None) -> str:
        def f(m: re.Match) -> str:
            if check is not None and not check(m):
                return m.group(0)
            self.counts[kind] += 1
            return repl(m) if repl else f"<{kind.upper()}>"

        return pattern.sub(f, text)

    def scrub(self, text: str) -> str:
        for pat in SECRET_PATTERNS:
            text = self._sub("secret", pat, text)
        text = self._sub("secret", SECRET_ASSIGN, text, repl=lambda m: m.group(1) + "<SECRET>")
        text = self._sub("email", EMAIL, text)
        text = self._sub("id_number", CN_ID, text, check=lambda m: cn_id_ok(m.group(0)))
        text = self._sub("card_number", CARD, text, check=lambda m: _card_ok(re.sub(r"\D", "", m.group(0))))
        text = self._sub("phone", PHONE, text)
        for fn in self.extra:
            text, n = fn(text)
            if n:
                self.counts[getattr(fn, "kind", "extra")] += n
        return text


def scrub(text: str) -> tuple[str, Counter]:
    """One-off convenience: the scrubbed text and what was found."""
    s = Scrubber()
    return s.scrub(text), s.counts
