from __future__ import annotations

import pytest
from keel.config import ConfigError, load_settings, parse_overrides


def test_layers_defaults_yaml_env_overrides(tmp_path, monkeypatch):
    user = tmp_path / "keel.yaml"
    user.write_text("gateway:\n  port: 9100\n  served_model_name: domain\nengine:\n  kvcache_gib: 3\n")
    monkeypatch.setenv("KEEL_GATEWAY__PORT", "9200")
    monkeypatch.setenv("KEEL_DATA_DIR", str(tmp_path / "d"))
    s = load_settings(user, ["engine.kvcache_gib=5", "engine.extra_args=[--seed, '1']"])
    assert s.gateway.served_model_name == "domain"  # user YAML over defaults
    assert s.gateway.port == 9200  # env over YAML
    assert s.engine.kvcache_gib == 5  # CLI over YAML
    assert s.engine.extra_args == ["--seed", "1"]
    assert s.engine.max_model_len == 2048  # packaged default survives
    assert s.db_path == tmp_path / "d" / "keel.duckdb"


def test_model_path_expands_and_null_means_embedded(monkeypatch):
    monkeypatch.delenv("KEEL_MODEL__PATH", raising=False)
    assert load_settings().model.path is None
    assert str(load_settings(overrides=["model.path=~/m"]).model.path).endswith("/m")


@pytest.mark.parametrize("bad", ["noequals", "=3"])
def test_bad_override_is_one_line(bad):
    with pytest.raises(ConfigError):
        parse_overrides([bad])


def test_invalid_value_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid configuration"):
        load_settings(overrides=["gateway.port=notaport"])
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(tmp_path / "bad.yaml")


def test_unknown_sections_and_keys_are_errors_naming_them(tmp_path, monkeypatch):
    """A misspelt key must not fall back to its default silently: every layer is checked."""
    user = tmp_path / "keel.yaml"
    user.write_text("gatway:\n  port: 9100\nengine:\n  kvcache_gb: 3\n")
    with pytest.raises(ConfigError, match=r"unknown settings: ") as err:
        load_settings(user)
    assert {"gatway", "engine.kvcache_gb"} == set(str(err.value).split(": ", 2)[2].split(", "))
    with pytest.raises(ConfigError, match=r"unknown setting: rag\.background\.dense_x"):
        load_settings(overrides=["rag.background.dense_x=false"])
    monkeypatch.setenv("KEEL_GATEWAY__PROT", "3")
    with pytest.raises(ConfigError, match=r"unknown setting: gateway\.prot"):
        load_settings()


def test_packaged_defaults_agree_with_the_typed_sections():
    """defaults.yaml and the pydantic defaults say the same thing (no value that only one of them holds)."""
    import yaml
    from keel.config import DEFAULTS_FILE, KeelSettings

    packaged = yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8"))
    typed = KeelSettings.model_fields
    for section, values in packaged.items():
        if not isinstance(values, dict):
            continue
        model = typed[section].annotation
        for key, value in values.items():
            default = model.model_fields[key].default
            if isinstance(value, str | int | float | bool) and not isinstance(default, type(None)):
                assert value == default or str(value) == str(default), (section, key, value, default)
