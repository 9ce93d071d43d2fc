"""Recipe files and ``key=value`` overrides: the light half of the recipe system.

The platform's CLI and config import this on every call, so it must not import trl or torch; the
typed stage configs (training.config) derive from TRL's config classes and do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from training.errors import TrainingError


class RecipeError(TrainingError):
    """A recipe problem worth one line."""


def read_recipe(path: Path) -> dict[str, Any]:
    """A recipe (or any Keel YAML mapping file): the one reader, with one-line errors."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise RecipeError(f"file not found: {path}") from None
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path} must hold a mapping at the top level")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=3", "c=[x, y]"]`` → ``{"a": {"b": 3}, "c": ["x", "y"]}``; values are parsed as YAML.

    The one override parser: recipes (flat keys) and the platform's ``--set section.key=value`` use it.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise RecipeError(f"override {item!r}: the value is not valid YAML") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return out
