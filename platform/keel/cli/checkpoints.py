"""`keel checkpoints list|show|add|history`, `keel promote`, `keel rollback`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from keel.cli import app as root
from keel.cli import load
from keel.cli.output import JsonOpt, print_table

app = typer.Typer(no_args_is_help=True)


# A swap is bounded on the platform's side (engine start with one retry, warm-up, drain, per replica), so
# the CLI waits for its answer however long that takes instead of timing out in the middle of it.
_SWAP_PATHS = ("/admin/promote", "/admin/rollback")


def _call(method: str, path: str, body: dict | None = None):
    import httpx

    from keel.cli.client import call

    kw = {"timeout": httpx.Timeout(30.0, read=None)} if path in _SWAP_PATHS else {}
    return call(load(), method, path, json=body, **kw)


def _table(rows: list[dict]) -> None:
    from rich.table import Table

    t = Table("version", "status", "stage", "parent", "gate", "promoted", "by", "path")
    for r in rows:
        gate = {True: "pass", False: "FAIL", None: "-"}[r.get("gate_passed")]
        t.add_row(
            r["version"],
            r["status"],
            r.get("stage") or "",
            r.get("parent") or "",
            gate,
            (r.get("promoted_at") or "")[:19],
            r.get("promoted_by") or "",
            r["path"],
        )
    print_table(t)


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every registered checkpoint with its status and gate result."""
    rows, _ = _call("GET", "/admin/checkpoints")
    typer.echo(json.dumps(rows, indent=2, default=str)) if as_json else _table(rows)


@app.command()
def show(version: str, as_json: JsonOpt = False) -> None:
    """One checkpoint with its manifest (lineage, datasets, eval, gate)."""
    row, _ = _call("GET", f"/admin/checkpoints/{version}")
    if as_json:
        typer.echo(json.dumps(row, indent=2, default=str))
        return
    _table([row])
    typer.echo(json.dumps(row["manifest"], indent=2, default=str, ensure_ascii=False))


@app.command()
def add(
    path: Path,
    version: Annotated[
        str | None, typer.Option(help="Version id (default: the manifest's, else the folder name).")
    ] = None,
) -> None:
    """Register a training output folder (it must hold a complete manifest.json)."""
    row, _ = _call("POST", "/admin/checkpoints", {"path": str(path.resolve()), "version": version})
    typer.echo(f"registered {row['version']} ({row['status']}) at {row['path']}")


@app.command()
def history(as_json: JsonOpt = False) -> None:
    """Promotions and rollbacks, newest first."""
    rows, _ = _call("GET", "/admin/swaps")
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.table import Table

    t = Table("when", "kind", "from", "to", "strategy", "status", "s", "by", "forced", "reason")
    for r in rows:
        t.add_row(
            (r["started_at"] or "")[:19],
            r["kind"],
            r["from_version"] or "",
            r["to_version"],
            r["strategy"] or "",
            r["status"],
            f"{r['seconds']:.2f}" if r["seconds"] is not None else "",
            r["by_whom"] or "",
            "yes" if r["forced"] else "",
            r["reason"] or "",
        )
    print_table(t)


@root.command()
def promote(
    version: str,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if the gates failed (recorded).")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the history).")] = None,
) -> None:
    """Hot-swap VERSION into serving with no failed request (in place or blue/green, chosen automatically)."""
    out, live = _call(
        "POST",
        "/admin/promote",
        {"version": version, "force": force, "reason": reason},
    )
    where = f"{out['strategy']} in {out['seconds']:.2f} s" if live else "the next `keel up` serves it"
    typer.echo(f"promoted {out['to_version']} (was {out['from_version']}): {where}")


@root.command()
def rollback(
    to: Annotated[
        str | None, typer.Option("--to", help="Version to return to (default: the previous one).")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the history).")] = None,
) -> None:
    """Return to the previously serving version, with the same zero-failure swap."""
    out, live = _call("POST", "/admin/rollback", {"to": to, "reason": reason})
    where = f"{out['strategy']} in {out['seconds']:.2f} s" if live else "the next `keel up` serves it"
    typer.echo(f"rolled back to {out['to_version']} (was {out['from_version']}): {where}")
