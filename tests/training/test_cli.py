"""`keel data prepare` and `keel train`: bad input is one line naming the file (and line); nothing written."""

from __future__ import annotations

from typer.testing import CliRunner

from tests.training.conftest import CHAT, write_jsonl


def _lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.strip()]


def test_data_prepare_cli(tmp_path):
    from keel.cli.data import app

    src = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CHAT}])
    recipe = tmp_path / "data.yaml"
    recipe.write_text(f"kind: sft\nsources: [{src}]\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["prepare", "--config", str(recipe), f"output={tmp_path / 'snap'}"])
    assert res.exit_code == 0, res.output
    assert "sft snapshot" in res.output and (tmp_path / "snap" / "snapshot.json").exists()

    with src.open("a", encoding="utf-8") as f:
        f.write("{broken\n")
    res = CliRunner().invoke(app, ["prepare", "--config", str(recipe), f"output={tmp_path / 'snap2'}"])
    assert res.exit_code == 1
    assert _lines(res.output) == [
        f"error: {src}:2: malformed JSON (Expecting property name enclosed in double quotes)"
    ]
    assert not (tmp_path / "snap2").exists()


def test_train_cli_errors_are_one_line(tmp_path):
    from keel.cli.train import app

    recipe = tmp_path / "sft.yaml"
    recipe.write_text(
        f"model: {tmp_path / 'missing'}\ndataset: {tmp_path}\noutput_dir: {tmp_path / 'out'}\n",
        encoding="utf-8",
    )
    res = CliRunner().invoke(app, ["sft", "--config", str(recipe)])
    assert res.exit_code == 1 and _lines(res.output) == [
        f"error: model {tmp_path / 'missing'} is not a Hugging Face model folder (no config.json)"
    ]
    res = CliRunner().invoke(app, ["sft", "--config", str(recipe), "learning_rat=1"])
    assert res.exit_code == 1 and "learning_rat" in res.output
    res = CliRunner().invoke(app, ["dpo", "--config", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 1 and "nope.yaml" in _lines(res.output)[0]
    res = CliRunner().invoke(app, ["options", "dpo"])
    assert res.exit_code == 0 and "beta = 0.1" in res.output


def test_every_training_stage_has_its_command():
    """`keel train <stage>` is made from the CLI's own table (the CLI starts without importing TRL); it must
    name exactly training.config.STAGES."""
    from keel.cli.train import STAGE_HELP, app

    from training.config import STAGES

    assert list(STAGE_HELP) == list(STAGES)
    for stage in STAGES:
        res = CliRunner().invoke(app, [stage, "--help"])
        assert res.exit_code == 0 and "--config" in res.output and "--resume" in res.output, res.output
