"""`keel backup DEST` and `keel restore SRC` (see keel.store.backup for what a backup holds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from keel.cli import app, fail, load
from keel.cli.output import JsonOpt

DestArg = Annotated[Path, typer.Argument(help="A new folder (on the platform's host).")]
NoCheckpointsOpt = Annotated[
    bool, typer.Option("--no-checkpoints", help="Leave checkpoint folders out (database and index only).")
]
SrcArg = Annotated[Path, typer.Argument(help="A folder written by `keel backup`.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Move the data dir's current state aside instead of refusing.")
]


@app.command("backup")
def backup_cmd(dest: DestArg, no_checkpoints: NoCheckpointsOpt = False, as_json: JsonOpt = False) -> None:
    """Back up the database, the document index and the checkpoints; consistent while the platform runs."""
    import httpx

    from keel.cli.client import call

    out, live = call(
        load(),
        "POST",
        "/admin/backup",
        json={"dest": str(dest.expanduser().resolve()), "checkpoints": not no_checkpoints},
        timeout=httpx.Timeout(30.0, read=None),  # copying checkpoints takes as long as it takes
    )
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    copied = sum(c["copied"] for c in out["checkpoints"])
    typer.echo(
        f"backed up {'the running platform' if live else 'the data dir'} to {out['path']}: "
        f"{out['requests']} request rows, serving {out['serving_version']}, "
        f"{copied}/{len(out['checkpoints'])} checkpoints, index {'yes' if out['rag'] else 'none'}, "
        f"{', '.join(out.get('included') or []) or 'no router model, schedule, datasets or cycles'} "
        f"({out['seconds']:.1f} s)"
        + (
            f"; left out: {', '.join(Path(x['path']).name for x in out['left_out'])} (see backup.json)"
            if out.get("left_out")
            else ""
        )
    )


@app.command("restore")
def restore_cmd(src: SrcArg, force: ForceOpt = False, as_json: JsonOpt = False) -> None:
    """Restore a backup into this data dir (the platform must be stopped); the next `keel up` serves it."""
    from keel.cli.client import running_platform
    from keel.store.backup import restore

    settings = load()
    if running_platform(settings):
        raise fail(f"a platform is running on {settings.data_dir}: stop it before restoring into it")
    out = restore(settings, src, force=force)
    if as_json:
        typer.echo(json.dumps(out.to_dict(), indent=2))
        return
    typer.echo(
        f"restored {src} into {out.data_dir}: {out.requests} request rows, serving {out.serving_version}, "
        f"{len(out.checkpoints)} checkpoints, index {'yes' if out.rag else 'none'}"
        + (f", {', '.join(out.restored)}" if out.restored else "")
        + (f"; the previous state is in {out.moved_aside}" if out.moved_aside else "")
    )
