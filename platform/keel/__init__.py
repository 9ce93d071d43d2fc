"""Keel platform: configuration, CLI, app composition, DuckDB schema."""

__version__ = "0.1.0"
