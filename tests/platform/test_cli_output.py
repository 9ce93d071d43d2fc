"""CLI tables in a pipe keep every cell whole (rich would squeeze them into 80 columns with "…"), and the
listing commands answer --json. Runs the real CLI on a data dir without a platform (fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def keel(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEEL_DATA_DIR": str(data_dir), "COLUMNS": "80"}
    env.pop("KEEL_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-m", "keel", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out


def test_piped_tables_are_not_cut_and_listings_have_json(tmp_path: Path):
    data = tmp_path / "data"
    name = "a-very-long-key-name-that-would-not-fit-in-eighty-columns-" + "x" * 30
    keel(data, "keys", "create", "--name", name)
    folder = tmp_path / ("checkpoints-on-a-long-shared-storage-path-" + "y" * 40) / "sft-2026-12-01T21-40-00"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(
        json.dumps({"version": "sft-2026-12-01-long-version-name", "stage": "sft"})
    )
    keel(data, "checkpoints", "add", str(folder))

    keys = keel(data, "keys", "list").stdout
    assert name in keys and "…" not in keys
    listing = keel(data, "checkpoints", "list").stdout
    assert str(folder) in listing and "sft-2026-12-01-long-version-name" in listing and "…" not in listing
    # one row per line: a script can grep a row and see all its cells
    row = next(line for line in listing.splitlines() if "sft-2026-12-01-long-version-name" in line)
    assert str(folder) in row and "candidate" in row

    assert json.loads(keel(data, "keys", "list", "--json").stdout)[0]["name"] == name
    assert json.loads(keel(data, "checkpoints", "list", "--json").stdout)[0]["path"] == str(folder)
    assert json.loads(keel(data, "checkpoints", "history", "--json").stdout) == []
