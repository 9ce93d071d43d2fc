"""`keel eval rag --qa FILE` and `keel eval router --data FILE`, as functions the eval CLI attaches.

from keel.cli.eval_rag import eval_rag, eval_router
app.command("rag")(eval_rag); app.command("router")(eval_router)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keel.cli import fail, load


def eval_rag(
    qa: Annotated[
        Path, typer.Option("--qa", help="JSONL with `question` and `source` (path under the corpus).")
    ],
    mode: Annotated[
        list[str] | None,
        typer.Option("--mode", help="hybrid, dense, lexical (repeatable; default all three)."),
    ] = None,
) -> None:
    """Retrieval recall@1/5/10 and MRR of the current index over question → source pairs."""
    from serving.rag.evaluate import evaluate, load_qa
    from serving.rag.retriever import RetrievalError, Retriever
    from serving.rag.store import IndexStoreError

    settings = load()
    try:
        items = load_qa(qa)
    except FileNotFoundError:
        raise fail(f"{qa}: no such file") from None
    except ValueError as e:
        raise fail(str(e)) from None
    retriever = Retriever(settings.rag_index_dir, settings.rag)
    # what the serving router gives the retriever: its domain examples, for the hubness correction
    from serving.router.intents import IntentsError, load_intents

    try:
        domain = load_intents(settings.router.intents_file).intents.get("domain")
    except IntentsError as e:
        raise fail(str(e)) from None
    if domain is not None:
        retriever.set_reference(list(domain.examples))
    typer.echo(f"{'mode':8} {'n':>4} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6}")
    for m in mode or ["dense", "lexical", "hybrid"]:
        if m not in ("hybrid", "dense", "lexical"):
            raise fail(f"unknown mode {m!r} (hybrid, dense or lexical)")
        try:
            r = evaluate(retriever, items, mode=m)
        except (RetrievalError, IndexStoreError) as e:
            raise fail(str(e)) from None
        typer.echo(f"{m:8} {r.n:4d} {r.recall[1]:6.3f} {r.recall[5]:6.3f} {r.recall[10]:6.3f} {r.mrr:6.3f}")


def eval_router(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="JSONL with `text` and `intent`; default: the shipped hard test half."),
    ] = None,
    classifier: Annotated[
        str | None,
        typer.Option("--classifier", help="linear or embedding; default: router.classifier."),
    ] = None,
    show_errors: Annotated[bool, typer.Option("--errors", help="List misrouted messages.")] = False,
) -> None:
    """Router precision and recall per intent and the confusion matrix (the classifier the platform serves)."""
    from keel.cycle.router_fit import serving_model_file
    from serving.rag.embedder import load_embedder
    from serving.router.classifier import EmbeddingClassifier
    from serving.router.evaluate import evaluate_router, load_labelled
    from serving.router.fit import TEST
    from serving.router.intents import IntentsError, load_intents
    from serving.router.linear import LinearClassifier, RouterModelError, load_model

    settings = load()
    data = data or TEST
    kind = classifier or settings.router.classifier
    if kind not in ("linear", "embedding"):
        raise fail(f"--classifier {kind!r}: use linear or embedding")
    try:
        rows = load_labelled(data)
        embedder = load_embedder(settings.rag.embedder)
        if kind == "linear":
            model_file = serving_model_file(settings)
            clf = LinearClassifier(load_model(model_file), embedder)
            typer.echo(f"linear router model: {model_file or 'packaged'}")
        else:
            intents = load_intents(settings.router.intents_file)
            clf = EmbeddingClassifier(
                intents, embedder, settings.router.threshold, settings.router.neighbours
            )
    except FileNotFoundError:
        raise fail(f"{data}: no such file") from None
    except (ValueError, IntentsError, RouterModelError) as e:
        raise fail(str(e)) from None
    report = evaluate_router(clf, rows)
    typer.echo(report.table())
    if show_errors:
        for text, gold, pred in report.errors:
            typer.echo(f"{gold} → {pred}: {text}")
