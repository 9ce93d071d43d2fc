"""`keel cycle run|status|list|show|cancel|resume`: the flywheel cycle from the command line.

While `keel up` runs, these call its admin API (the cycle runs inside the platform, `run` follows it);
otherwise the same routes run in-process over the database file and `run` waits for the cycle to end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from keel.cli.output import JsonOpt, print_table

app = typer.Typer(no_args_is_help=True)

FINISHED = ("succeeded", "failed", "cancelled", "interrupted")


def _client():
    from keel.cli import load
    from keel.cli.client import PlatformClient

    return PlatformClient(load())


def _progress(p: dict | None) -> str:
    from flywheel.step_outputs import progress_line

    return progress_line(p)


def _steps_table(cycle: dict) -> None:
    from rich.table import Table

    from flywheel.cycle import read_output

    t = Table("step", "status", "s", "result")
    for s in cycle.get("steps", []):
        if s["status"] == "skipped":
            result = s.get("reason") or ""
        elif s["status"] == "failed":
            result = s.get("error") or ""
        elif s["status"] == "done":
            result = read_output(s["name"], s.get("output")).summary()
        else:
            result = _progress(s.get("progress"))
        secs = f"{s['seconds']:.0f}" if s.get("seconds") is not None else ""
        t.add_row(s["name"], s["status"], secs, result)
    print_table(t)


def _summary(c: dict) -> None:
    typer.echo(f"{c['cycle_id']}: {c['status']}" + (f" ({c['outcome']})" if c.get("outcome") else ""))
    if c.get("error"):
        typer.echo(f"  error: {c['error']}")
    if c.get("report"):
        typer.echo(f"  report: {c['report']}")


def _follow(client, cycle_id: str, poll_s: float = 5.0) -> dict:
    seen: dict[str, str] = {}
    shown = ""
    while True:
        c = client.call("GET", f"/admin/cycles/{cycle_id}")
        for s in c["steps"]:
            if seen.get(s["name"]) != s["status"]:
                seen[s["name"]] = s["status"]
                extra = s.get("reason") or s.get("error") or ""
                typer.echo(f"  {s['name']:<14} {s['status']}" + (f": {extra}" if extra else ""), err=True)
            if s["status"] == "running" and (line := _progress(s.get("progress"))) and line != shown:
                shown = line
                typer.echo(f"  {s['name']:<14} {line}", err=True)
        if c["status"] in FINISHED:
            return c
        time.sleep(poll_s)


@app.command()
def run(
    stages: Annotated[str | None, typer.Option("--stages", help="Comma-separated: cpt,sft,dpo,kto.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Mine and build the snapshots; train nothing.")
    ] = False,
    profile: Annotated[
        str | None, typer.Option("--profile", help="A shipped profile (demo) or a YAML file.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Platform running: start and return at once.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run one cycle: mine → snapshots → train → evaluate → gate → promote (or reject with the reasons)."""
    chosen = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    if profile and Path(profile).suffix in (".yaml", ".yml") and Path(profile).exists():
        profile = str(Path(profile).resolve())  # the platform process reads it from its own directory
    with _client() as client:
        body = {
            "stages": chosen,
            "dry_run": dry_run,
            "profile": profile,
            "trigger": "cli",
            "wait": not client.live,
        }
        c = client.call("POST", "/admin/cycles", json=body)
        if client.live and not detach:
            typer.echo(
                f"{c['cycle_id']}: running in the platform (Ctrl-C stops following, not the cycle)", err=True
            )
            try:
                c = _follow(client, c["cycle_id"])
            except KeyboardInterrupt:
                typer.echo(
                    f"\nstill running: `keel cycle status`, `keel cycle cancel {c['cycle_id']}`", err=True
                )
                raise typer.Exit(130) from None
        elif not client.live:
            c = client.call("GET", f"/admin/cycles/{c['cycle_id']}")
    if as_json:
        typer.echo(json.dumps(c, indent=2, default=str))
    else:
        if c.get("steps"):
            _steps_table(c)
        _summary(c)
    if c["status"] in ("failed", "cancelled", "interrupted"):
        raise typer.Exit(1)


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """The running cycle (if any), the last one, and the schedule with its next run time."""
    with _client() as client:
        st = client.call("GET", "/admin/cycles/status")
        live = client.live
    if as_json:
        typer.echo(json.dumps(st, indent=2, default=str))
        return
    sch = st["schedule"]
    when = sch["next_run"] or ("platform not running" if not live else "-")
    what = (
        f"every {sch['interval_s']:g} s"
        if sch.get("interval_s")
        else f"cron '{sch['cron']}' ({sch['timezone']})"
    )
    typer.echo(f"schedule: {'on' if sch['enabled'] else 'off'} · {what} · next run: {when}")
    if st["running"]:
        typer.echo("running:")
        _steps_table(st["running"])
        _summary(st["running"])
    elif st["last"]:
        typer.echo("last: ", nl=False)
        _summary(st["last"])
    else:
        typer.echo("no cycle has run yet")


@app.command("list")
def list_(limit: Annotated[int, typer.Option(help="Newest first.")] = 20, as_json: JsonOpt = False) -> None:
    """Cycles, newest first."""
    from rich.table import Table

    with _client() as client:
        rows = client.call("GET", "/admin/cycles", params={"limit": limit})
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    t = Table("cycle", "status", "outcome", "trigger", "stages", "started", "error")
    for c in rows:
        t.add_row(
            c["cycle_id"],
            c["status"],
            c.get("outcome") or "",
            c["trigger"],
            ",".join(c["stages"]),
            (c.get("started_at") or "")[:19],
            (c.get("error") or "")[:60],
        )
    print_table(t)


@app.command()
def show(cycle_id: str, as_json: JsonOpt = False) -> None:
    """One cycle: every step with its status, time, result and hashes."""
    with _client() as client:
        c = client.call("GET", f"/admin/cycles/{cycle_id}")
    if as_json:
        typer.echo(json.dumps(c, indent=2, default=str))
        return
    _steps_table(c)
    _summary(c)


@app.command()
def cancel(cycle_id: str) -> None:
    """Stop a running cycle: its child process group is killed; serving is untouched."""
    with _client() as client:
        c = client.call("POST", f"/admin/cycles/{cycle_id}/cancel")
    _summary(c)


@app.command()
def resume(cycle_id: str) -> None:
    """Continue an interrupted, failed or cancelled cycle from its first incomplete step."""
    with _client() as client:
        c = client.call("POST", f"/admin/cycles/{cycle_id}/resume", json={"wait": not client.live})
        c = _follow(client, cycle_id) if client.live else client.call("GET", f"/admin/cycles/{cycle_id}")
    _steps_table(c)
    _summary(c)
    if c["status"] != "succeeded":
        raise typer.Exit(1)
