"""`keel export` through a running platform (the admin API), with and without --out.

The platform needs no engine for this: it points at an unreachable external one, so it starts in seconds
(and /health stays 503: no engine is ready; the admin API answering is what this test waits for).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import PlatformProcess


def _start_engineless(p: PlatformProcess, timeout: float = 300) -> None:
    def admin_up() -> bool:
        ok = (p.data_dir / "run" / "platform.json").exists()
        return ok and p.admin("GET", "/admin/status").status_code == 200

    p.start(timeout, ready=admin_up)


@pytest.fixture(scope="module")
def engineless(base_model_dir, tmp_path_factory):
    p = PlatformProcess(
        data_dir=tmp_path_factory.mktemp("keel-export"),
        model_dir=base_model_dir,
        overrides=['engine.external_urls=["http://127.0.0.1:9"]'],
    )
    _start_engineless(p)
    try:
        yield p
    finally:
        p.stop()


def test_export_without_out_while_the_platform_runs(engineless):
    proc = engineless.cli("export")
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.parent == engineless.data_dir / "datasets" and path.name.startswith("flywheel-"), proc.stdout
    meta = json.loads((path / "snapshot.json").read_text())
    assert meta["kind"] == "flywheel" and meta["hash"] in proc.stderr
    named = engineless.cli("export", "--out", "mine-1")
    assert named.stdout.strip() == str(engineless.data_dir / "datasets" / "mine-1")
    again = engineless.cli("export", "--out", "mine-1", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_export_without_out_and_without_a_platform(base_model_dir, tmp_path):
    p = PlatformProcess(data_dir=tmp_path / "data", model_dir=base_model_dir)
    path = Path(p.cli("export").stdout.strip().splitlines()[-1])
    assert path.parent == p.data_dir / "datasets" and (path / "dpo" / "train.jsonl").exists()
