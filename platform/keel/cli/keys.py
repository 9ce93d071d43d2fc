"""`keel keys create|list|revoke`: through the admin API while the platform runs, else on the file."""

from __future__ import annotations

from typing import Annotated

import typer

from keel.cli import load
from keel.cli.output import JsonOpt

app = typer.Typer(no_args_is_help=True)


def _run(method: str, path: str, **kw):
    from keel.cli.client import call

    return call(load(), method, path, **kw)[0]


@app.command()
def create(
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")],
    role: Annotated[str, typer.Option("--role", help="user | annotator | admin")] = "user",
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    out = _run("POST", "/admin/keys", json={"name": name, "role": role})
    typer.echo(out["key"])
    typer.echo(
        f"created {out['key_id']} ({out['name']}, {out['role']}); this key is not shown again", err=True
    )


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List keys (never the secrets)."""
    rows = _run("GET", "/admin/keys")
    if as_json:
        import json

        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    from keel.cli.output import print_table

    table = Table("key id", "name", "role", "created", "revoked")
    for r in rows:
        table.add_row(
            r["key_id"], r["name"], r["role"], (r["created_at"] or "")[:19], (r["revoked_at"] or "")[:19]
        )
    print_table(table)


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="Key id (or unique name).")]) -> None:
    """Revoke a key; requests with it get 401 from now on."""
    out = _run("POST", f"/admin/keys/{key_id}/revoke")
    typer.echo(f"revoked {out['key_id']} ({out['name']})")
