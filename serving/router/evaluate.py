"""Router precision and recall per intent and a confusion matrix over a labelled JSONL set (`text`, `intent`)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

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


def load_labelled(path: Path) -> list[tuple[str, str]]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            text, intent = str(d["text"]), str(d["intent"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: expected a JSON object with 'text' and 'intent' ({e})") from e
        if intent not in ROUTES:
            raise ValueError(f"{path}:{n}: unknown intent {intent!r} (one of {', '.join(ROUTES)})")
        out.append((text, intent))
    if not out:
        raise ValueError(f"{path}: no messages")
    return out


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
