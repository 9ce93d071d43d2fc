"""Router precision and recall per intent and a confusion matrix over a labelled JSONL set (`text`, `intent`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from keelcommon.jsonl import read_jsonl
from serving.router.classifier import Classification
from serving.router.intents import ROUTES


class SyncClassifier(Protocol):
    def classify_sync(self, text: str) -> Classification: ...


@dataclass
class RouterReport:
    n: int
    accuracy: float
    per_intent: dict[str, float]  # recall: the share of each gold intent routed right
    confusion: dict[str, dict[str, int]]  # gold → predicted → count
    errors: list[tuple[str, str, str]]  # (text, gold, predicted)
    precision: dict[str, float] = field(default_factory=dict)  # the share of each prediction that was right

    @property
    def recall(self) -> dict[str, float]:
        return self.per_intent

    def table(self) -> str:
        labels = list(ROUTES)
        head = (
            "gold \\ predicted".ljust(16)
            + "".join(label[:12].rjust(14) for label in labels)
            + "      n  precision  recall"
        )
        rows = [head]
        for g in labels:
            cells = "".join(str(self.confusion.get(g, {}).get(p, 0)).rjust(14) for p in labels)
            n = sum(self.confusion.get(g, {}).values())
            rows.append(
                g.ljust(16)
                + cells
                + f"{n:7d}{self.precision.get(g, 0.0):11.3f}{self.per_intent.get(g, 0.0):8.3f}"
            )
        rows.append(f"overall accuracy {self.accuracy:.3f} on {self.n} messages")
        return "\n".join(rows)


def _labelled(d: dict) -> tuple[str, str]:
    text, intent = str(d["text"]), str(d["intent"])
    if intent not in ROUTES:
        raise ValueError(f"unknown intent {intent!r} (one of {', '.join(ROUTES)})")
    return text, intent


def load_labelled(path: Path) -> list[tuple[str, str]]:
    return read_jsonl(
        path, _labelled, error=ValueError, expected="a JSON object with 'text' and 'intent'", what="messages"
    )


def evaluate_router(classifier: SyncClassifier, data: list[tuple[str, str]]) -> RouterReport:
    conf: dict[str, Counter] = {r: Counter() for r in ROUTES}
    errors = []
    for text, gold in data:
        pred = classifier.classify_sync(text).intent
        conf[gold][pred] += 1
        if pred != gold:
            errors.append((text, gold, pred))
    per = {g: (c[g] / sum(c.values())) for g, c in conf.items() if sum(c.values())}
    predicted = {p: sum(conf[g][p] for g in conf) for p in ROUTES}
    prec = {p: conf[p][p] / predicted[p] for p in ROUTES if predicted[p]}
    acc = sum(conf[g][g] for g in conf) / len(data)
    return RouterReport(len(data), acc, per, {g: dict(c) for g, c in conf.items()}, errors, prec)
