"""Fit the router's linear model from shipped data and gate it on the test half.

    result = refit(embedder, flagged=[("...", "out_of_scope")], model_path=...)
    result.decision["passed"]   # the candidate was written only if this is true

Training rows: the intents file's examples + the tuning half (data/router_tune.jsonl) + messages users
flagged as misrouted (feedback `type: "route"`, with the intent they should have had). The test half
(data/router_test.jsonl) is never trained on: it is what the gate compares, so a refit on noisy
flags cannot make routing worse than the model it would replace. The fit is deterministic (zero
start, full-batch gradient descent, fixed steps), so the same rows always give the same model.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serving.rag.embedder import Embedder
from serving.router.config import RefitGate
from serving.router.evaluate import RouterReport, evaluate_router, load_labelled
from serving.router.intents import ROUTES, Intents, load_intents
from serving.router.lexicon import LexiconFeatures, load_lexicon
from serving.router.linear import (
    DEFAULT_MODEL,
    LinearClassifier,
    LinearModel,
    RouterModelError,
    features,
    load_model,
    softmax,
)

DATA = Path(__file__).parent / "data"
TUNE = DATA / "router_tune.jsonl"
TEST = DATA / "router_test.jsonl"

# chosen by 5-fold cross-validation on the tuning half (docs/BENCHMARKS.md, "Router")
SCALE = 4.0
L2 = 1e-3
STEPS = 800
LEARNING_RATE = 0.5
MOMENTUM = 0.9


@dataclass
class TrainingSet:
    texts: list[str]
    labels: list[str]
    sources: Counter = field(default_factory=Counter)

    def digest(self) -> str:
        h = hashlib.sha256()
        for t, y in zip(self.texts, self.labels, strict=True):
            h.update(json.dumps([t, y], ensure_ascii=False).encode())
        return h.hexdigest()


def training_set(
    intents: Intents | None = None,
    tune: Path | None = TUNE,
    flagged: list[tuple[str, str]] | None = None,
    test: Path | None = TEST,
) -> TrainingSet:
    """Intents examples + tuning half + flagged messages; a text seen twice keeps its last label (a
    user's flag overrides a shipped example); a text that is in the test half is left out."""
    held = {t for t, _ in load_labelled(test)} if test else set()
    rows: dict[str, tuple[str, str]] = {}
    for name, intent in (intents or load_intents()).intents.items():
        for t in intent.examples:
            rows[t] = (name, "intents")
    for t, y in load_labelled(tune) if tune else []:
        rows[t] = (y, "tune")
    for t, y in flagged or []:
        if y not in ROUTES:
            raise ValueError(f"flagged message has unknown intent {y!r} (one of {', '.join(ROUTES)})")
        if t.strip():
            rows[t] = (y, "flagged")
    out = TrainingSet([], [])
    for t, (y, src) in rows.items():
        if t in held:
            out.sources["left out: in the test half"] += 1
            continue
        out.texts.append(t)
        out.labels.append(y)
        out.sources[src] += 1
    return out


def fit_weights(
    x: np.ndarray, y: np.ndarray, n_labels: int, l2: float = L2, steps: int = STEPS
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, L2 on the weights, full-batch gradient descent with momentum."""
    n, d = x.shape
    onehot = np.eye(n_labels, dtype=np.float64)[y]
    w = np.zeros((d, n_labels))
    b = np.zeros(n_labels)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    x64 = x.astype(np.float64)
    for _ in range(steps):
        g = (softmax(x64 @ w + b) - onehot) / n
        gw = x64.T @ g + l2 * w
        gb = g.sum(axis=0)
        vw = MOMENTUM * vw + gw
        vb = MOMENTUM * vb + gb
        w -= LEARNING_RATE * vw
        b -= LEARNING_RATE * vb
    return w, b


def fit(
    data: TrainingSet,
    embedder: Embedder,
    lexicon: LexiconFeatures | None = None,
    l2: float = L2,
    steps: int = STEPS,
) -> LinearModel:
    lexicon = lexicon or load_lexicon()
    labels = list(ROUTES)
    vectors = embedder.embed_queries(data.texts)
    x = features(vectors, data.texts, lexicon) * SCALE
    y = np.array([labels.index(t) for t in data.labels])
    w, b = fit_weights(x, y, len(labels), l2, steps)
    return LinearModel(
        embedder=embedder.name,
        labels=labels,
        dim=int(vectors.shape[1]),
        scale=SCALE,
        weights=np.round(w, 6).tolist(),
        bias=np.round(b, 6).tolist(),
        trained_on={"n": len(data.texts), "sources": dict(data.sources), "sha256": data.digest()},
        settings={"l2": l2, "steps": steps, "learning_rate": LEARNING_RATE, "momentum": MOMENTUM},
    )


def report_dict(r: RouterReport) -> dict:
    return {
        "n": r.n,
        "accuracy": round(r.accuracy, 4),
        "recall": {k: round(v, 4) for k, v in r.per_intent.items()},
        "precision": {k: round(v, 4) for k, v in r.precision.items()},
    }


def decide(candidate: dict, baseline: dict | None, gate: RefitGate | None = None) -> dict:
    """Candidate vs the model it would replace on the test half, shaped like a checkpoint gate's
    decision (passed, gates with baseline/candidate/delta, reasons)."""
    gate = gate or RefitGate()
    gates, reasons = [], []

    def check(name: str, c: float, b: float | None, ok: bool, why: str) -> None:
        row = {"gate": name, "metric": name, "passed": ok, "reason": why, "candidate": c, "unit": "points"}
        if b is not None:
            row |= {"baseline": b, "delta": (c - b) * 100}
        gates.append(row)
        if not ok:
            reasons.append(f"{name}: {why}")

    for k in ROUTES:
        c = candidate["recall"].get(k, 0.0)
        check(f"recall.{k} floor", c, None, c >= gate.min_recall, f"{c:.3f} (needs ≥ {gate.min_recall:g})")
    if baseline is not None:
        rows = [("accuracy", candidate["accuracy"], baseline["accuracy"], gate.max_accuracy_drop_points)]
        rows += [
            (
                f"recall.{k}",
                candidate["recall"].get(k, 0.0),
                baseline["recall"].get(k, 0.0),
                gate.max_recall_drop_points,
            )
            for k in ROUTES
        ]
        for name, c, b, slack in rows:
            delta = (c - b) * 100
            check(
                name,
                c,
                b,
                delta >= -slack - 1e-9,
                f"{b:.3f} → {c:.3f} ({delta:+.1f} points; may drop {slack:g})",
            )
    return {
        "passed": not reasons,
        "suite": f"router test half ({candidate['n']} messages)",
        "candidate": candidate,
        "baseline": baseline,
        "policy": gate.model_dump(),
        "gates": gates,
        "reasons": reasons,
    }


@dataclass
class RefitResult:
    decision: dict
    model: LinearModel
    written: Path | None  # where the candidate went (None: refused, or dry run)
    training: TrainingSet


def refit(
    embedder: Embedder,
    flagged: list[tuple[str, str]] | None = None,
    model_path: Path | None = None,
    baseline_path: Path | None = None,
    intents: Intents | None = None,
    tune: Path | None = TUNE,
    test: Path = TEST,
    write: bool = True,
    force: bool = False,
    gate: RefitGate | None = None,
) -> RefitResult:
    """Fit on intents + tuning half + flags, evaluate on the test half, write only if the gate passes.

    The baseline is the model at `baseline_path` (default: `model_path` if it exists, else the packaged
    model); `force` writes a refused candidate anyway (recorded in the decision).
    """
    data = training_set(intents, tune, flagged, test)
    model = fit(data, embedder)
    rows = load_labelled(test)
    cand = report_dict(evaluate_router(LinearClassifier(model, embedder), rows))
    model.test = cand
    base_file = baseline_path or (model_path if model_path and Path(model_path).exists() else DEFAULT_MODEL)
    baseline = None
    try:
        current = load_model(base_file)
        baseline = report_dict(evaluate_router(LinearClassifier(current, embedder), rows)) | {
            "model": str(base_file)
        }
    except RouterModelError:
        baseline = None  # nothing usable to compare with: the first fit
    decision = decide(cand, baseline, gate)
    decision["training"] = {"n": len(data.texts), "sources": dict(data.sources), "sha256": data.digest()}
    written = None
    target = Path(model_path) if model_path else DEFAULT_MODEL
    if write and (decision["passed"] or force):
        model.save(target)
        written = target
    decision["written"] = str(written) if written else None
    decision["forced"] = bool(force and not decision["passed"] and written)
    return RefitResult(decision, model, written, data)
