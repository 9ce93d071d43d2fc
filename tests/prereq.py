"""What a test does when something it needs outside the repo is absent: skip locally, fail in CI.

A CI run that skips its browser or shared-data tests would go green without having checked them, so
with ``CI=true`` the same absence is a failure that names what is missing.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(reason: str) -> None:
    """Skip with ``reason``; under ``CI=true`` fail with it instead."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing prerequisite is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)
