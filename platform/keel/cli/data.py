"""`keel data prepare --config data-recipe.yaml [key=value ...]`: build an immutable dataset snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Prepare training datasets (a group, so `keel data prepare` stays a subcommand)."""


@app.command()
def prepare(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Data recipe YAML (training/recipes/data-*.yaml).")
    ],
    overrides: Annotated[list[str] | None, typer.Argument(help="Overrides: key=value (YAML values).")] = None,
) -> None:
    """Read, clean, dedup, scrub and guard a dataset; write a snapshot with hash and stats."""
    import json

    from keel.cli import fail, load
    from training.recipe import parse_overrides, read_recipe

    settings = load()
    data = {**read_recipe(config), **parse_overrides(list(overrides or []))}
    if not data.get("output"):
        data["output"] = str(settings.data_dir / "datasets" / f"{data.get('kind', 'cpt')}-{config.stem}")

    def expand(v):
        return (
            [str(Path(str(x)).expanduser()) for x in v]
            if isinstance(v, list)
            else str(Path(str(v)).expanduser())
        )

    for key in ("output", "sources", "general", "instruction", "eval_sets", "general_eval"):
        if data.get(key):
            data[key] = expand(data[key])

    from training.data.heldout import OverlapError
    from training.data.prepare import make_prepare_config
    from training.data.prepare import prepare as run_prepare
    from training.data.snapshot import SnapshotError

    try:
        snap = run_prepare(make_prepare_config(data))
    except (SnapshotError, OverlapError, OSError) as e:
        raise fail(str(e)) from None
    stats = json.loads((snap.path / "stats.json").read_text(encoding="utf-8"))
    typer.echo(
        f"{snap.kind} snapshot {snap.path} (sha256 {snap.hash[:12]}): kept {stats['kept']} of {stats['read']}, "
        f"dropped {stats['dropped']}, PII {stats['pii']}, {stats['mb_per_s']} MB/s"
    )
