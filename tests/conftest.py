"""Shared fixtures. Expensive things (the converted base model, engines) are built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KEEL_SHARED_DATA", REPO.parent / "shared" / "data"))
TEST_CACHE = Path(os.environ.get("KEEL_TEST_CACHE", Path.home() / ".cache" / "keel-test"))
ARTIFACTS = Path(os.environ.get("KEEL_TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    """The embedded SmolLM2 as an HF folder, converted once and cached across sessions."""
    from keel.basemodel import ensure_base

    return ensure_base(TEST_CACHE / "checkpoints", None)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
