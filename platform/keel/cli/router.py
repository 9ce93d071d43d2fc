"""`keel router train` and `keel router flags`: through the admin API while the platform runs, else
on the database file (the same routes in-process)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from keel.cli import load
from keel.cli.output import JsonOpt

app = typer.Typer(no_args_is_help=True, help="The intent router: route flags and gated refits.")


@app.command()
def train(
    force: Annotated[
        bool, typer.Option("--force", help="Write the candidate even if the gate refuses it.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Fit and judge; write nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The whole decision as JSON.")] = False,
) -> None:
    """Refit the router on intents + tuning half + route flags; keep it only if the test half holds."""
    from keel.cli.client import call

    out, live = call(
        load(), "POST", "/admin/flywheel/router/train", json={"force": force, "dry_run": dry_run}
    )
    if as_json:
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    tr = out["training"]
    typer.echo(f"fitted on {tr['n']} messages ({', '.join(f'{k} {v}' for k, v in tr['sources'].items())})")
    for g in out["gates"]:
        typer.echo(f"  {'pass' if g['passed'] else 'FAIL'}  {g['gate']}: {g['reason']}")
    c = out["candidate"]
    typer.echo(
        f"test half ({c['n']}): accuracy {c['accuracy']:.3f}, recall "
        + ", ".join(f"{k} {v:.3f}" for k, v in c["recall"].items())
    )
    if out["written"]:
        where = "served now" if out["served"] else ("served at the next `keel up`" if not live else "written")
        typer.echo(f"{'forced: ' if out['forced'] else ''}model written to {out['written']} ({where})")
    elif out["dry_run"]:
        typer.echo("dry run: nothing written")
    else:
        typer.echo("refused: the current model stays (" + "; ".join(out["reasons"]) + ")")
        raise typer.Exit(1)


@app.command()
def flags(
    as_json: JsonOpt = False,
) -> None:
    """Messages users flagged as misrouted, with the intent they should have had."""
    from keel.cli.client import call

    rows, _ = call(load(), "GET", "/admin/flywheel/router/flags")
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        typer.echo(f"{r['routed'] or '-'} → {r['intent']}  {r['request_id']}  {r['text'][:80]!r}")
    typer.echo(f"{len(rows)} flagged messages")
