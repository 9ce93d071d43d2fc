"""Every shipped cycle profile loads into the typed config, and what it names exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from keel.cycle.service import PROFILES, load_profile, profile_path
from keel.cycle.steps import repo_path

from flywheel.cycle_config import CycleConfig
from training.config import make_config
from training.eval.gates import load_policy

SHIPPED = sorted(p.stem for p in PROFILES.glob("*.yaml"))


def test_demo_and_overtrained_are_shipped():
    assert {"demo", "overtrained"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_loads_and_its_files_exist(name):
    import yaml

    cfg = load_profile(CycleConfig(), name)
    assert cfg.profile == name
    load_policy(repo_path(cfg.policy))  # a valid gate policy
    for stage in cfg.stages:
        st = cfg.stage(stage)
        recipe = yaml.safe_load(repo_path(st.recipe).read_text())
        make_config(stage, {**recipe, **st.overrides})  # every override is a real recipe key
        assert st.budget.wall_clock_s > 0, f"{name}: {stage} has no time budget"
    shared = repo_path("../shared/data")
    if shared.exists():
        for p in [*cfg.cpt_data.sources, *cfg.cpt_data.general, *cfg.cpt_data.general_eval]:
            assert repo_path(p).exists(), p


def test_demo_fits_its_45_minute_window():
    cfg = load_profile(CycleConfig(), "demo")
    training = sum(cfg.stage(s).budget.wall_clock_s for s in cfg.stages)
    assert training <= 35 * 60  # the rest of the window: snapshots, two evals, the gate and the swap


def test_unknown_profile_is_a_clear_error():
    from flywheel.cycle import CycleError

    with pytest.raises(CycleError, match="unknown profile 'nope'.*demo"):
        profile_path("nope")


def test_a_bad_profile_key_is_refused(tmp_path: Path):
    from flywheel.cycle import CycleError

    bad = tmp_path / "bad.yaml"
    bad.write_text("cycle:\n  min_sft_pairs: 3\n")
    with pytest.raises(CycleError, match="bad.yaml"):
        load_profile(CycleConfig(), str(bad), data_dir=tmp_path)


def test_profiles_come_only_from_the_shipped_folder_or_the_data_dir(tmp_path: Path):
    from flywheel.cycle import CycleError

    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    for folder in (data, elsewhere):
        folder.mkdir()
        (folder / "mine.yaml").write_text("cycle:\n  min_sft_examples: 7\n")
    assert (
        load_profile(CycleConfig(), "mine.yaml", data_dir=data).min_sft_examples == 7
    )  # relative: the data dir
    assert load_profile(CycleConfig(), str(data / "mine.yaml"), data_dir=data).min_sft_examples == 7
    for name in (str(elsewhere / "mine.yaml"), "../elsewhere/mine.yaml"):
        with pytest.raises(CycleError, match="profiles are read only from"):
            load_profile(CycleConfig(), name, data_dir=data)
    with pytest.raises(CycleError, match="profiles are read only from"):  # no data dir: shipped ones only
        load_profile(CycleConfig(), str(data / "mine.yaml"))
    assert load_profile(CycleConfig(), "demo", data_dir=data).profile == "demo"
