from __future__ import annotations

import pytest

from tests.harness import platform_running


@pytest.fixture(scope="module")
def swap_platform(base_model_dir, tmp_path_factory):
    """A platform of its own with a managed engine: swaps must not disturb the session platform."""
    root = tmp_path_factory.mktemp("swap")
    with platform_running(
        root,
        base_model_dir,
        # 500 s: under the tests' steady load a blue/green engine starts in 130-230 s on an idle 2-core host
        # (the serving engine's EngineCore spins on the second core while its worker computes) and slower
        # on a busier CI host; a start cut short at the timeout only restarts from zero on the retry.
        ["swap.drain_timeout_s=60", "swap.start_timeout_s=500", "router.enabled=false"],
    ) as p:
        yield p
