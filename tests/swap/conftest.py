from __future__ import annotations

import pytest

from tests.harness import platform_running
from tests.swap.settings import SWAP_SETTINGS


def _platform(name: str, base_model_dir, tmp_path_factory, *settings: str):
    with platform_running(tmp_path_factory.mktemp(name), base_model_dir, [*SWAP_SETTINGS, *settings]) as p:
        yield p


@pytest.fixture(scope="module")
def swap_platform(base_model_dir, tmp_path_factory):
    """A platform of its own with a managed engine: swaps must not disturb the session platform."""
    # 500 s: under the tests' steady load a blue/green engine starts in 130-230 s on an idle 2-core host
    # (the serving engine's EngineCore spins on the second core while its worker computes) and slower
    # on a busier CI host; a start cut short at the timeout only restarts from zero on the retry.
    yield from _platform("swap", base_model_dir, tmp_path_factory, "swap.start_timeout_s=500")
