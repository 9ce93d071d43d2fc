"""The one place that reads configuration files and environment variables.

Layers, lowest priority first: the packaged ``defaults.yaml``, a user YAML (``--config`` or
``KEEL_CONFIG``), ``KEEL_*`` environment variables (nested with ``__``) and CLI overrides
(``section.key=value``). Every other part of Keel receives its typed section from here.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from flywheel.config import MiningConfig
from flywheel.cycle_config import CycleConfig
from flywheel.watch import WatchConfig
from keel.annotation_config import AnnotationConfig
from keel.errors import KeelError
from keel.metrics_config import MetricsConfig
from keel.store.requestlog import RequestLogConfig
from serving.config import EngineConfig, GatewayConfig, SwapConfig
from serving.rag.config import RagConfig
from serving.router.config import RouterConfig
from training.eval.config import EvalSettings

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")
# the demo corpus beside a checkout (repo/../shared/data/...); absent in an installed wheel
DEMO_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "domain" / "tidb-docs-zh" / "docs"


class ConfigError(KeelError):
    """A configuration problem worth one line to the user."""


class ModelConfig(BaseModel):
    path: Path | None = Field(
        None, description="A local Hugging Face model folder to serve as `base`; empty: the embedded SmolLM2."
    )

    @field_validator("path", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        if v in (None, "", "null"):
            return None
        return Path(str(v)).expanduser()


class KeelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEEL_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(Path("~/.keel"), description="Where checkpoints, the database and indexes live.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    requestlog: RequestLogConfig = Field(default_factory=RequestLogConfig)
    swap: SwapConfig = Field(default_factory=SwapConfig)
    rag: RagConfig = Field(default_factory=RagConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    mining: MiningConfig = Field(default_factory=MiningConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    annotation: AnnotationConfig = Field(default_factory=AnnotationConfig)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    cycle: CycleConfig = Field(default_factory=CycleConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        return Path(str(v)).expanduser()

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_keys(cls, data: Any) -> Any:
        # Sections are plain pydantic models that ignore extra keys by default; a misspelt key must not
        # silently fall back to its default, so every layer's keys are checked here, by their dotted path.
        if isinstance(data, dict) and (unknown := unknown_keys(cls, data)):
            raise ValueError(
                "unknown setting" + ("s" if len(unknown) > 1 else "") + ": " + ", ".join(unknown)
            )
        return data

    # Filled in by load_settings before construction: the YAML files, lowest priority first.
    _yaml_files: list[Path] = []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=cls._yaml_files, deep_merge=True)
        return (init_settings, env_settings, yaml_source)

    # Paths derived from data_dir, so every part agrees on the layout.
    @property
    def db_path(self) -> Path:
        from keel.store import DB_FILE

        return self.data_dir / DB_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def rag_index_dir(self) -> Path:
        """The document index (Chroma + chunk catalog)."""
        return self.rag.index_dir.expanduser() if self.rag.index_dir else self.data_dir / "rag"

    @property
    def rag_corpus_paths(self) -> list[Path]:
        """What `keel up` indexes in the background: the configured paths, else the demo corpus if present."""
        if self.rag.corpus_paths is not None:
            return [Path(p).expanduser() for p in self.rag.corpus_paths]
        demo = DEMO_CORPUS
        return [demo] if demo.is_dir() else []

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    @property
    def run_dir(self) -> Path:
        """Files describing the running platform (pid, URL, admin key)."""
        return self.data_dir / "run"


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (also through ``X | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for a in typing.get_args(annotation) if (m := _section_model(a))]
        return models[0] if len(models) == 1 else None
    return None


def unknown_keys(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths in ``data`` that ``model`` (recursively) has no field for."""
    out = []
    fields = model.model_fields
    aliases = {f.alias: name for name, f in fields.items() if f.alias}
    for key, value in data.items():
        name = aliases.get(key, key)
        if name not in fields:
            out.append(prefix + str(key))
            continue
        sub = _section_model(fields[name].annotation)
        if sub is not None and isinstance(value, dict) and sub.model_config.get("extra") != "allow":
            out.extend(unknown_keys(sub, value, f"{prefix}{key}."))
    return out


def check_yaml_file(path: Path) -> Path:
    """A config file that exists and holds a YAML mapping, or a one-line ConfigError."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (FileNotFoundError, IsADirectoryError) as e:
        raise ConfigError(f"config file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return path


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["gateway.port=9000", "engine.extra_args=[--foo]"]`` → nested dict (values parsed as YAML)."""
    from training.recipe import RecipeError
    from training.recipe import parse_overrides as parse

    try:
        return parse(overrides)
    except RecipeError as e:
        raise ConfigError(str(e)) from None


def load_settings(config_file: Path | str | None = None, overrides: list[str] | None = None) -> KeelSettings:
    """Build the settings object. Call once per process and pass sections down."""
    files = [DEFAULTS_FILE]
    user = config_file or os.environ.get("KEEL_CONFIG")
    if user:
        files.append(check_yaml_file(Path(user).expanduser()))
    KeelSettings._yaml_files = files
    try:
        return KeelSettings(**parse_overrides(overrides or []))
    except ValidationError as e:
        raise ConfigError("invalid configuration: " + describe(e)) from None


def describe(e: ValidationError) -> str:
    """A pydantic error as one line that names each bad setting by its dotted path."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
