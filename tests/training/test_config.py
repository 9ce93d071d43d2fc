from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.config import CPTConfig, DPOConfig, RecipeError, SFTConfig, help_text, make_config

RECIPES = sorted((Path(__file__).resolve().parents[2] / "training" / "recipes").glob("*.yaml"))


def test_defaults_follow_the_seeds():
    cpt = CPTConfig()
    assert 1e-5 <= cpt.learning_rate <= 5e-5 and cpt.warmup_steps == 0.1 and cpt.lr_scheduler_type == "cosine"
    assert DPOConfig().loss_type == ["sigmoid"] and DPOConfig().beta == 0.1
    assert SFTConfig().assistant_only_loss and not SFTConfig().bf16


def test_every_field_has_help():
    for stage in ("cpt", "sft", "dpo", "kto"):
        for line in help_text(stage).splitlines():
            assert line.split(": ", 1)[1].strip(), line


def test_bad_recipe_is_one_line():
    with pytest.raises(RecipeError, match="learning_rat"):
        make_config("sft", {"learning_rat": 1})
    with pytest.raises(RecipeError, match="max_steps"):
        make_config("cpt", {"max_steps": "many"})


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_load_and_start_with_their_command(recipe: Path):
    text = recipe.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first.startswith("# keel "), f"{recipe.name} must start with the command that runs it"
    data = yaml.safe_load(text)
    if recipe.name.startswith("data-"):
        from training.data.prepare import PrepareConfig, make_prepare_config

        assert isinstance(make_prepare_config(data), PrepareConfig)
        assert "keel data prepare" in first
    else:
        stage = recipe.name.split("-")[-1].removesuffix(".yaml")
        assert f"keel train {stage}" in first
        assert make_config(stage, data).stage == stage


def test_shipped_deepspeed_configs_match_the_generator(tmp_path):
    import json

    from training.deepspeed import write_shipped, zero_config

    shipped = Path(__file__).resolve().parents[2] / "deploy" / "deepspeed"
    for generated in write_shipped(tmp_path):
        assert json.loads((shipped / generated.name).read_text()) == json.loads(generated.read_text()), (
            generated.name
        )
    z3 = zero_config(3, "cpu")["zero_optimization"]
    assert z3["offload_param"]["device"] == "cpu" and z3["stage3_gather_16bit_weights_on_model_save"]
    with pytest.raises(ValueError):
        zero_config(4)


def test_stage_configs_are_trls_and_take_every_trl_key(tmp_path):
    """No copied fields: a TRL or TrainingArguments key Keel never names is a recipe key as it is."""
    import trl

    cpt = make_config(
        "cpt", {"max_grad_norm": 0.5, "optim": "adamw_torch", "output_dir": str(tmp_path / "c")}
    )
    assert isinstance(cpt, trl.SFTConfig) and cpt.max_grad_norm == 0.5 and cpt.packing
    dpo = make_config("dpo", {"label_smoothing": 0.1})
    assert isinstance(dpo, trl.DPOConfig) and dpo.label_smoothing == 0.1
    # the trainer writes resumable states into the work folder; the config keeps the final folder
    args = cpt.for_trainer(tmp_path / ".c.work", has_eval=False)
    assert args.output_dir == str(tmp_path / ".c.work") and cpt.output_dir == str(tmp_path / "c")


def test_a_misspelt_key_names_the_close_one():
    with pytest.raises(RecipeError, match=r"unknown key 'warmup_ratio' \(did you mean 'warmup_steps'\?\)"):
        make_config("cpt", {"warmup_ratio": 0.1})
