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
    wait: Annotated[
        bool,
        typer.Option(help="With a running platform: follow its background embedding until done."),
    ] = True,
) -> None:
    """Index documents. Incremental: unchanged files are skipped, changed ones re-embedded, deleted ones removed.

    While `keel up` runs, the platform does the work (it is the index's only writer): the lexical
    phase is applied at once, embedding continues in the platform's background.
    """
    from keel.cli.client import running_platform

    settings = load()
    if not paths and not remove:
        raise fail("give PATH... to index (or --remove PATH)")
    live = running_platform(settings)
    if live is not None:
        _through_platform(live, paths or [], remove or [], rebuild, lexical_only, quiet, wait)
        return

    from serving.rag.documents import InputError
    from serving.rag.indexer import Indexer
    from serving.rag.store import IndexStoreError

    indexer = Indexer(settings.rag_index_dir, settings.rag)
    try:
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


def _through_platform(
    live: tuple[str, str],
    paths: list[Path],
    remove: list[Path],
    rebuild: bool,
    lexical_only: bool,
    quiet: bool,
    wait: bool,
) -> None:
    """Ask the running platform to index (POST /admin/index) and follow its progress."""
    import httpx

    from keel.cli.client import AdminClient

    if rebuild:
        raise fail("--rebuild replaces the index folder the platform has open; stop `keel up` first")
    body = {
        "paths": [str(p.expanduser().resolve()) for p in paths],
        "remove": [str(p.expanduser().resolve()) for p in remove],
        "dense": not lexical_only,
    }
    client = AdminClient(*live)
    try:
        res = client.call("POST", "/admin/index", json=body)
    except (RuntimeError, httpx.HTTPError) as e:
        raise fail(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    typer.echo(f"indexed (lexical, searchable now) {res['summary']} → platform at {live[0]}")
    if lexical_only or not res["status"].get("dense_enabled", True):
        return
    if not wait:
        typer.echo("embedding continues in the platform; progress: GET /admin/index", err=True)
        return
    _follow(client, quiet)


def _follow(client, quiet: bool) -> None:
    """Poll the platform's indexer until its dense pass is done; Ctrl-C detaches (the work goes on)."""
    import time

    from tqdm import tqdm

    bar = None
    try:
        while True:
            st = client.call("GET", "/admin/index")
            if st["state"] == "error" and not st["dense_pending"]:
                raise fail(f"background embedding failed: {st['error']}")
            todo, done = st["embedding_todo"], st["embedding_done"]
            if todo and not quiet:
                if bar is None or bar.total != todo:
                    bar = bar or tqdm(unit="chunk", desc="embedding (platform)")
                    bar.reset(total=todo)
                bar.n = done
                bar.refresh()
            if not st["dense_pending"] and not st["queued"] and st["state"] != "lexical":
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        typer.echo("\ndetached; the platform keeps embedding in the background", err=True)
        return
    finally:
        if bar is not None:
            bar.close()
    typer.echo(f"embedded {st['last_dense'] or 'nothing new'}")
