"""`keel mine` and `keel export`: through the admin API while the platform runs, else on the file."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from keel.cli import app, load
from keel.cli.output import JsonOpt


def _call(op: str, **kw):
    from keel.cli.client import call

    return call(load(), "POST", f"/admin/flywheel/{op}", json=kw)[0]


@app.command()
def mine(
    full: Annotated[
        bool, typer.Option("--full", help="Mine the whole log, not only since the last run.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Mine requests + feedback into preference pairs (queued for review) and SFT examples."""
    out = _call("mine", full=full)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    st = out["stats"]
    typer.echo(
        f"{out['run_id']}: {st.get('pairs', 0)} new pairs, {st.get('sft', 0)} SFT examples "
        f"from {st.get('requests', 0)} requests / {st.get('feedback', 0)} feedback rows"
    )
    dropped = {k: v for k, v in st.items() if k.startswith(("dropped_", "skipped_"))}
    if dropped:
        typer.echo("  " + ", ".join(f"{k}={v}" for k, v in sorted(dropped.items())))


@app.command()
def export(
    out: Annotated[
        str | None, typer.Option("--out", help="Snapshot folder (relative: under the export dir).")
    ] = None,
    include_unreviewed: Annotated[
        bool, typer.Option("--include-unreviewed", help="Also export pairs nobody reviewed yet.")
    ] = False,
) -> None:
    """Export reviewed pairs and SFT examples as a TRL dataset snapshot with a content hash."""
    res = _call("export", out=out, include_unreviewed=include_unreviewed)
    typer.echo(res["path"])
    typer.echo(f"{res['pairs']} pairs, {res['sft']} SFT examples; hash {res['hash']}", err=True)
