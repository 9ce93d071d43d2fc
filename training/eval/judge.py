"""The judge: how close an answer is to a reference answer, as a number in [0, 1]. Pure text, no model.

    from training.eval.judge import Judge
    Judge().score(answer, reference, lang="zh")   # Judgement(score=0.41, chrf=41.1, lang="zh", ...)

The metric is **chrF on characters** (sacrebleu's ``CHRF``: character n-grams up to 6, recall weighted
twice as much as precision, whitespace ignored, no word n-grams), divided by 100. Why this one:
- it is language-neutral: it needs no word segmentation, so Chinese (no spaces) and English are scored
  the same way, and the docs' mix of Chinese prose with English identifiers and SQL just works;
- it is deterministic, needs no model or download, and costs well under a millisecond per answer,
  so `keel simulate` can score every answer and the eval child every generated one;
- sacrebleu is the reference implementation (its signature pins the settings);
- recall-weighted overlap rewards an answer that states what the reference states, and it falls for
  the failure modes seen here: doc-site markup (``{{< copyable "shell" >}}``), unrelated shell snippets,
  a refusal, an answer about another topic.
Considered and not chosen: cosine of multilingual E5 embeddings. It is cross-lingual by design (a correct
English answer to a Chinese question scores as high as a Chinese one, the opposite of what a user who
asked in Chinese wants), its scores crowd into a narrow band (~0.75-0.9 for anything on topic), and it
would tie the judge to one embedding model's version. chrF's weakness is the converse: a correct
paraphrase in other words scores lower than one that reuses the reference's wording. The references here
are the docs' own sentences and the model answers from retrieved docs, so reuse is what a good answer does.
chrF++ (word bigrams too) is not used: words need segmentation in Chinese.

Language. An answer in another language than the one asked in, or with no text, gets the lowest score
(0.0) whatever it shares with the reference: chrF alone would give an English answer to a Chinese
reference some credit for the identifiers they share (``TiDB``, SQL). The expected language is the
question's (``lang``), else the reference's. A text's language is the share of CJK characters among its
letters (CJK + Latin), counted outside code spans and URLs: ``zh`` from :data:`ZH_MIN_SHARE` up.
The judge never raises on any answer: ``None``, non-text or empty answers score 0.0 with a reason.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

Lang = Literal["zh", "en"]

# A Chinese character carries about a word, a Latin letter a fifth of one: Chinese prose full of English
# identifiers ("TiDB 支持 CREATE INDEX 语句") has a CJK share of ~0.4; an English answer that quotes one
# Chinese title ~0.05.
ZH_MIN_SHARE = 0.15
LOWEST = 0.0

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_CODE = re.compile(r"```.*?(```|$)|`[^`\n]*`|https?://\S+", re.S)


def language(text: str) -> Lang | None:
    """``zh`` or ``en`` by the share of CJK characters among the letters of the prose; None: no letters."""
    prose = _CODE.sub(" ", text)
    cjk, latin = len(_CJK.findall(prose)), len(_LATIN.findall(prose))
    if cjk + latin == 0:
        return None
    return "zh" if cjk / (cjk + latin) >= ZH_MIN_SHARE else "en"


@dataclass(frozen=True)
class Judgement:
    score: float  # in [0, 1]; LOWEST when the answer cannot be scored
    chrf: float  # sacrebleu chrF (0-100) of the answer against the reference; 0 when not computed
    lang: str | None  # the answer's language as detected
    expected: str | None  # the language it should be in
    reason: str | None = None  # why the score is the lowest: "empty", "language", "no reference"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Judge:
    """chrF (characters, n ≤ 6, β = 2) with a language check. Thread-safe: sentence scores share no state."""

    name = "chrf"

    def __init__(self, char_order: int = 6, beta: int = 2):
        from sacrebleu.metrics import CHRF

        self._chrf = CHRF(char_order=char_order, word_order=0, beta=beta)
        self._chrf.sentence_score("a", ["a"])  # sacrebleu builds the signature only after a first score

    @property
    def signature(self) -> str:
        """sacrebleu's signature of the settings (goes with every score set that is compared)."""
        return f"{self._chrf.get_signature()}|lang:cjk>={ZH_MIN_SHARE}"

    def score(self, answer: object, reference: str | None, lang: str | None = None) -> Judgement:
        """How close ``answer`` is to ``reference``, for a question asked in ``lang`` (zh/en; None: the
        reference's language). Never raises: what cannot be scored gets :data:`LOWEST` and a reason."""
        ref = reference.strip() if isinstance(reference, str) else ""
        expected = lang if lang in ("zh", "en") else (language(ref) if ref else None)
        text = answer.strip() if isinstance(answer, str) else ""
        if not ref:
            return Judgement(LOWEST, 0.0, language(text) if text else None, expected, "no reference")
        if not text:
            return Judgement(LOWEST, 0.0, None, expected, "empty")
        got = language(text)
        if expected is not None and got != expected:
            return Judgement(LOWEST, 0.0, got, expected, "language")
        chrf = float(self._chrf.sentence_score(text, [ref]).score)
        return Judgement(round(chrf / 100.0, 6), chrf, got, expected)


_default: Judge | None = None


def judge() -> Judge:
    """The process's judge with the default settings (built once: sacrebleu's import is the cost)."""
    global _default
    if _default is None:
        _default = Judge()
    return _default
