"""The one place that reads configuration files and environment variables.

Layers, lowest priority first: the packaged ``defaults.yaml``, a user YAML (``--config`` or
``KEEL_CONFIG``), ``KEEL_*`` environment variables (nested with ``__``) and CLI overrides
(``section.key=value``). Every other part of Keel receives its typed section from here.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from flywheel.config import MiningConfig
from keel.review.config import AnnotationConfig
from serving.config import EngineConfig, GatewayConfig
from serving.rag.config import RagConfig
from serving.router.config import RouterConfig
from training.eval.config import EvalSettings

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")
# the demo corpus beside a checkout (repo/../shared/data/...); absent in an installed wheel
DEMO_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "domain" / "tidb-docs-zh" / "docs"


class ConfigError(ValueError):
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


class RequestLogConfig(BaseModel):
    enabled: bool = Field(
        True, description="Turn the request log off (benchmarks only: nothing is recorded)."
    )
    queue_size: int = Field(10_000, description="In-memory rows before spilling to disk.")
    batch_size: int = Field(512, description="Rows per DuckDB insert.")
    flush_interval_s: float = Field(0.25, description="Longest time a row waits in the queue.")
    fsync: bool = Field(
        False, description="fsync the journal per row (power-loss safety; kill -9 is safe without)."
    )


class SwapConfig(BaseModel):
    start_timeout_s: float = Field(
        300.0, description="Blue/green: a new engine not healthy by then is retried once on a fresh port."
    )
    drain_timeout_s: float = Field(
        120.0, description="Longest wait for in-flight requests (streams too) on the old weights."
    )
    warmup_timeout_s: float = Field(
        120.0, description="Longest wait for the warm-up completion on new weights."
    )


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field, field_name):  # pragma: no cover - unused, __call__ does the work
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


class KeelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEEL_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(Path("~/.keel"), description="Where checkpoints, the database and indexes live.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    requestlog: RequestLogConfig = Field(default_factory=RequestLogConfig)
    swap: SwapConfig = Field(default_factory=SwapConfig)
    rag: RagConfig = Field(default_factory=RagConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    mining: MiningConfig = Field(default_factory=MiningConfig)
    annotation: AnnotationConfig = Field(default_factory=AnnotationConfig)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    extra: dict[str, Any] = Field(default_factory=dict, description="Sections owned by parts not wired yet.")

    @field_validator("data_dir", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        return Path(str(v)).expanduser()

    # Filled in by load_settings before construction.
    _yaml_layers: list[dict[str, Any]] = []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_sources = [_YamlSource(settings_cls, d) for d in reversed(cls._yaml_layers)]
        return (init_settings, env_settings, *yaml_sources)

    # Paths derived from data_dir, so every part agrees on the layout.
    @property
    def db_path(self) -> Path:
        return self.data_dir / "keel.duckdb"

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


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["gateway.port=9000", "engine.extra_args=[--foo]"]`` → nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return out


def load_settings(config_file: Path | str | None = None, overrides: list[str] | None = None) -> KeelSettings:
    """Build the settings object. Call once per process and pass sections down."""
    layers = [_read_yaml(DEFAULTS_FILE)]
    user = config_file or os.environ.get("KEEL_CONFIG")
    if user:
        layers.append(_read_yaml(Path(user).expanduser()))
    KeelSettings._yaml_layers = layers
    try:
        return KeelSettings(**parse_overrides(overrides or []))
    except ConfigError:
        raise
    except Exception as e:  # pydantic ValidationError → one line
        first = str(e).splitlines()
        raise ConfigError("invalid configuration: " + " ".join(first[1:3]).strip()) from e


@cache
def settings() -> KeelSettings:
    """Process-wide settings for code paths that have no explicit object (CLI entry)."""
    return load_settings()
