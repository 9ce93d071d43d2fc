"""`keel` command line. Heavy imports (torch, vLLM, transformers) happen inside commands so --help is fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="keel",
    help="Keel: serve, log, learn, guard and hot-swap domain LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class CliState:
    config_file: Path | None = None
    overrides: list[str] = []


@app.callback()
def _root(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="User YAML config file.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a setting: section.key=value (repeatable)."),
    ] = None,
) -> None:
    CliState.config_file = config
    CliState.overrides = list(set_ or [])


def load():
    """The settings for this CLI invocation (loaded once)."""
    from keel.config import load_settings

    if not hasattr(CliState, "_settings"):
        CliState._settings = load_settings(CliState.config_file, CliState.overrides)  # type: ignore[attr-defined]
    return CliState._settings  # type: ignore[attr-defined]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error and return an Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _register() -> None:
    # Each area owns one CLI module; they import only typer at module level.
    from keel.cli import backup as _backup  # noqa: F401  (defines `backup`, `restore`)
    from keel.cli import checkpoints as _checkpoints  # also defines `promote`, `rollback`
    from keel.cli import keys as _keys
    from keel.cli import lineage as _lineage  # noqa: F401  (defines `lineage`)
    from keel.cli import mine as _mine  # noqa: F401  (defines `mine`, `export`)
    from keel.cli import serve as _serve  # noqa: F401  (defines `up`, `model`)
    from keel.cli import simulate as _simulate  # noqa: F401  (defines `simulate`)

    app.add_typer(_keys.app, name="keys", help="Create, list and revoke API keys.")
    app.add_typer(_checkpoints.app, name="checkpoints", help="The checkpoint registry and swap history.")
    for name, help_ in [
        ("train", "Train CPT, SFT or DPO checkpoints."),
        ("data", "Prepare training datasets."),
        ("eval", "Evaluate checkpoints and apply promotion gates."),
        ("index", "Build or update the document index (RAG)."),
        ("cycle", "Run the flywheel cycle (mine → train → gate → promote) and see its schedule."),
        ("router", "The intent router: route flags and gated refits."),
        ("canary", "A candidate on a sticky share of live traffic, decided by a sequential test."),
    ]:
        mod = __import__(
            f"keel.cli.{name}", fromlist=["app"]
        )  # a broken import must show, not hide a command
        app.add_typer(mod.app, name=name, help=help_)


def main() -> None:
    _register()
    from keel.config import ConfigError
    from keel.errors import user_errors

    try:
        app()
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except user_errors() as e:  # the user can act on these: one line; anything else is a bug and shows
        typer.echo(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", err=True)
        sys.exit(1)
