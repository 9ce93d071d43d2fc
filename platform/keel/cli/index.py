"""`keel index PATH...`: build or update the document index (Chroma + BM25 catalog)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keel.cli import fail, load

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback(invoke_without_command=True, context_settings={"allow_interspersed_args": True})
def index(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Markdown, text or JSONL files, or folders of them.")
    ] = None,
    remove: Annotated[
        list[Path] | None, typer.Option("--remove", help="Drop everything indexed from this file or folder.")
    ] = None,
    rebuild: Annotated[
        bool, typer.Option(help="Build a fresh index beside the old one and swap it in.")
    ] = False,
    lexical_only: Annotated[
        bool, typer.Option("--lexical-only", help="Update the catalog/BM25 only (seconds); embed later.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Index documents. Incremental: unchanged files are skipped, changed ones re-embedded, deleted ones removed."""
    from serving.rag.documents import InputError
    from serving.rag.indexer import Indexer
    from serving.rag.store import IndexStoreError

    settings = load()
    indexer = Indexer(settings.rag_index_dir, settings.rag)
    try:
        if not paths and not remove:
            raise fail("give PATH... to index (or --remove PATH)")
        if rebuild:
            summary = indexer.rebuild(paths or [], dense=not lexical_only, progress=not quiet)
        else:
            summary = indexer.update(
                paths or [], dense=not lexical_only, progress=not quiet, remove=remove or []
            )
    except (InputError, IndexStoreError) as e:
        raise fail(str(e)) from None
    except KeyboardInterrupt:
        raise fail("interrupted; the index keeps what was embedded and the next run resumes", 130) from None
    typer.echo(f"indexed {summary.line()} → {settings.rag_index_dir}")
    if (settings.run_dir / "platform.json").exists():
        # Chroma is thread-safe, not process-safe: the platform's open collection may not see vectors
        # another process wrote; the catalog (BM25 and chunk texts) it reloads on its next request
        typer.echo(
            "note: a running platform searches the new catalog at once (lexical); restart it to "
            "search the new vectors",
            err=True,
        )
