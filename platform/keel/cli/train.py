"""`keel train cpt|sft|dpo|kto --config recipe.yaml [key=value ...] [--resume]`.

The platform resolves the recipe (`model: base` → the base checkpoint folder, an empty `output_dir` →
<data_dir>/checkpoints/<stage>-<time>) and runs the stage in this process. On GPU clusters use the
`deepspeed` launcher with `python -m training` (deploy/deepspeed/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Recipe YAML (training/recipes/*.yaml).")]
Overrides = Annotated[list[str] | None, typer.Argument(help="Recipe overrides: key=value (YAML values).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue a killed run from its last saved step.")]


def resolve_recipe(stage: str, config: Path, overrides: list[str]) -> dict:
    """Recipe file + overrides → a mapping with real paths (raises ConfigError / ModelError)."""
    from keel.checkpoints.basemodel import ensure_base
    from keel.cli import load
    from training.recipe import parse_overrides, read_recipe

    settings = load()
    data = {**read_recipe(config), **parse_overrides(overrides)}
    model = str(data.get("model", "base"))
    if model == "base":
        data["model"] = str(ensure_base(settings.checkpoints_dir, settings.model.path))
    elif not Path(model).expanduser().exists() and (settings.checkpoints_dir / model).exists():
        data["model"] = str(settings.checkpoints_dir / model)  # a version name
    else:
        data["model"] = str(Path(model).expanduser())
    for key in ("dataset", "ref_model", "chat_template_path", "deepspeed"):
        if isinstance(data.get(key), str) and data[key]:
            data[key] = str(Path(str(data[key])).expanduser())
    if not data.get("output_dir"):
        from datetime import UTC, datetime

        data["output_dir"] = str(settings.checkpoints_dir / f"{stage}-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    data["output_dir"] = str(Path(str(data["output_dir"])).expanduser())
    return data


def _run(stage: str, config: Path, overrides: list[str] | None, resume: bool) -> None:
    from keel.cli import fail
    from keel.errors import user_errors

    try:
        data = resolve_recipe(stage, config, list(overrides or []))
        from training.__main__ import run_stage

        result = run_stage(stage, data, resume)
    except user_errors() as e:
        raise fail(str(e)) from None
    loss = result.metrics.get("loss")
    typer.echo(
        f"{stage}: {result.steps} steps, final loss {loss if loss is None else round(loss, 4)} → {result.output}"
    )


# One command per stage (`keel train cpt --help` ...). The stage names are training.config.STAGES's, kept
# here as plain strings: importing that module imports TRL, and the CLI must start without it.
STAGE_HELP = {
    "cpt": "Continued pre-training on a prepared text snapshot.",
    "sft": "Supervised fine-tuning on chat data (loss on assistant turns).",
    "dpo": "Preference optimisation against the parent checkpoint.",
    "kto": "Unpaired preference optimisation (answers rated up or down) against the parent checkpoint.",
}


def _stage_command(stage: str):
    def command(config: ConfigOpt, overrides: Overrides = None, resume: ResumeOpt = False) -> None:
        _run(stage, config, overrides, resume)

    command.__name__ = stage
    return command


for _stage, _help in STAGE_HELP.items():
    app.command(_stage, help=_help)(_stage_command(_stage))


@app.command("options")
def options(stage: Annotated[str, typer.Argument(help="cpt, sft, dpo or kto")]) -> None:
    """List a stage's recipe keys with defaults and help."""
    from keel.cli import fail
    from training.config import STAGES, help_text

    if stage not in STAGES:
        raise fail(f"unknown stage {stage!r}")
    typer.echo(help_text(stage))
