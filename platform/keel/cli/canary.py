"""`keel canary start VERSION --share 0.2 | status | stop`: a candidate on a share of live traffic."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from keel.cli.output import JsonOpt

app = typer.Typer(no_args_is_help=True)


def _call(method: str, path: str, **kw):
    from keel.cli import load
    from keel.cli.client import PlatformClient

    with PlatformClient(load()) as client:
        if not client.live:
            typer.echo("error: a canary needs the running platform (keel up)", err=True)
            raise typer.Exit(1)
        return client.call(method, path, **kw)


def _show(c: dict | None) -> None:
    if not c:
        typer.echo("no canary has run yet")
        return
    typer.echo(
        f"{c['canary_id']}: {c['version']} beside {c['champion']} on {c['share']:.0%} · {c['status']}"
        + (f" ({c['reason']})" if c.get("reason") else "")
    )
    fig = c.get("figures") or {}
    if fig:
        typer.echo(f"  requests: candidate {fig.get('n_candidate')}, champion {fig.get('n_champion')}")
        for s in fig.get("signals", []):
            if s.get("difference") is None:
                continue
            mark = " WORSE" if s["worse"] else ""
            typer.echo(
                f"  {s['name']:<18} candidate {s['candidate']:.3g} vs {s['champion']:.3g} · difference "
                f"{s['difference']:+.3g} [{s['low']:+.3g}, {s['high']:+.3g}] · p {s['p']:.2g}{mark}"
            )


@app.command()
def start(
    version: str,
    share: Annotated[float | None, typer.Option("--share", help="Share of conversations, 0..1.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Canary a version that failed its gates.")] = False,
    min_requests: Annotated[
        int | None, typer.Option("--min-requests", min=1, help="Fewest requests per arm to decide.")
    ] = None,
    max_requests: Annotated[
        int | None, typer.Option("--max-requests", min=1, help="End after the candidate served this many.")
    ] = None,
    window: Annotated[
        float | None, typer.Option("--window", min=0.001, help="End after this many seconds at the latest.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Serve VERSION to a sticky share of conversations beside the champion until the test decides."""
    if share is not None and not 0 < share < 1:
        typer.echo(f"error: --share must be between 0 and 1, not {share}", err=True)
        raise typer.Exit(2)
    body = {"version": version, "share": share, "force": force}
    over = {"min_requests": min_requests, "max_requests": max_requests, "max_window_s": window}
    c = _call("POST", "/admin/canary", json=body | {k: v for k, v in over.items() if v is not None})
    typer.echo(json.dumps(c, indent=2, default=str)) if as_json else _show(c)


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """The running (or last) canary, its arms' figures and the decision so far."""
    st = _call("GET", "/admin/canary")
    typer.echo(json.dumps(st, indent=2, default=str)) if as_json else _show(st["canary"])


@app.command()
def stop() -> None:
    """Take the candidate out of rotation now (the champion serves alone)."""
    _show(_call("POST", "/admin/canary/stop"))
