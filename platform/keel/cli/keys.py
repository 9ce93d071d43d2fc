"""`keel keys create|list|revoke`: through the admin API while the platform runs, else on the file."""

from __future__ import annotations

from typing import Annotated

import typer

from keel.cli import fail, load

app = typer.Typer(no_args_is_help=True)


def _backend():
    """A function (op, **kw) → result that works whether or not the platform is running."""
    from keel.cli.client import AdminClient, running_platform

    settings = load()
    live = running_platform(settings)
    if live:
        client = AdminClient(*live)

        def remote(op: str, **kw):
            if op == "create":
                return client.call("POST", "/admin/keys", json=kw)
            if op == "list":
                return client.call("GET", "/admin/keys")
            return client.call("POST", f"/admin/keys/{kw['key_id']}/revoke")

        return remote

    from keel.store.db import Database
    from keel.store.keys import KeyStore

    store = KeyStore(Database(settings.db_path))

    def local(op: str, **kw):
        if op == "create":
            info, secret = store.create(kw["name"], kw["role"])
            return {**info.to_dict(), "key": secret}
        if op == "list":
            return [k.to_dict() for k in store.list()]
        return store.revoke(kw["key_id"]).to_dict()

    return local


def _run(op: str, **kw):
    try:
        return _backend()(op, **kw)
    except Exception as e:  # one line, never a traceback
        raise fail(str(e).splitlines()[0] if str(e) else type(e).__name__) from e


@app.command()
def create(
    name: Annotated[str, typer.Option("--name", help="Who or what the key is for.")],
    role: Annotated[str, typer.Option("--role", help="user | annotator | admin")] = "user",
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    out = _run("create", name=name, role=role)
    typer.echo(out["key"])
    typer.echo(
        f"created {out['key_id']} ({out['name']}, {out['role']}); this key is not shown again", err=True
    )


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """List keys (never the secrets)."""
    rows = _run("list")
    if as_json:
        import json

        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("key id", "name", "role", "created", "revoked")
    for r in rows:
        table.add_row(
            r["key_id"], r["name"], r["role"], (r["created_at"] or "")[:19], (r["revoked_at"] or "")[:19]
        )
    Console().print(table)


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="Key id (or unique name).")]) -> None:
    """Revoke a key; requests with it get 401 from now on."""
    out = _run("revoke", key_id=key_id)
    typer.echo(f"revoked {out['key_id']} ({out['name']})")
