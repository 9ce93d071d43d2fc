"""`keel backup` / `keel restore` of a stopped platform's data dir through the real CLI (fast tier; the
running-platform case with engines and traffic is tests/platform/test_backup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def keel(data_dir: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEEL_DATA_DIR": str(data_dir)}
    env.pop("KEEL_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-m", "keel", *args], env=env, capture_output=True, text=True, timeout=180
    )
    assert (out.returncode == 0) == ok, out.stderr
    return out


def test_offline_backup_and_restore(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    keel(a, "keys", "create", "--name", "alice")
    dest = tmp_path / "backups" / "nested" / "bk"  # parents are created
    summary = json.loads(keel(a, "backup", str(dest), "--json").stdout)
    assert summary["live"] is False and summary["tables"]["api_keys"] == 1
    assert (dest / "backup.json").exists() and not list(dest.parent.glob(".bk.tmp-*"))
    again = keel(a, "backup", str(dest), ok=False)
    assert "already exists" in again.stderr and "Traceback" not in again.stderr

    keel(b, "restore", str(dest))
    assert [k["name"] for k in json.loads(keel(b, "keys", "list", "--json").stdout)] == ["alice"]
    refused = keel(b, "restore", str(dest), ok=False)
    assert "--force" in refused.stderr
    out = json.loads(keel(b, "restore", str(dest), "--force", "--json").stdout)
    assert out["moved_aside"] and (Path(out["moved_aside"]) / "keel.duckdb").exists()
    bad = keel(b, "restore", str(tmp_path), ok=False)
    assert "not a complete Keel backup" in bad.stderr
