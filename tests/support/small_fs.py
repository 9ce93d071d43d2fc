"""A small filesystem a test can fill: a size-limited tmpfs mounted in the test's tmp_path.

``small_fs`` yields a :class:`SmallFs` (its ``path``, ``fill(leave=...)`` to leave only a few bytes free
with a ballast file, ``free()`` to delete the ballast again). Mounting needs root (or CAP_SYS_ADMIN):
where it is not permitted, the test skips locally and fails under ``CI=true`` (tests/prereq.py), so a
CI run never goes green without having filled a disk.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.prereq import missing

SIZE = "8m"


@dataclass
class SmallFs:
    path: Path

    @property
    def ballast(self) -> Path:
        return self.path / ".ballast"

    def available(self) -> int:
        return shutil.disk_usage(self.path).free

    def fill(self, leave: int = 0) -> None:
        """Grow the ballast file until at most ``leave`` bytes are free (0: until the disk refuses)."""
        with self.ballast.open("ab", buffering=0) as f:  # unbuffered: a refused write is not retried at close
            want = self.available() - leave
            while want > 0:
                want -= f.write(b"\0" * min(want, 1 << 20))
            if leave == 0:  # the last partial pages: write until the disk says no
                try:
                    while f.write(b"\0" * 4096):
                        pass
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
        assert self.available() <= max(leave, 4096), f"{self.available()} bytes still free"

    def free(self) -> None:
        """Delete the ballast: the disk has room again."""
        self.ballast.unlink(missing_ok=True)


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    """An 8 MiB tmpfs at ``tmp_path/small``; unmounted (lazily, if still busy) when the test ends."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None:
        missing("`mount` is not installed: cannot make a small filesystem to fill")
    out = _run("mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount))
    if out.returncode != 0:
        missing(
            f"cannot mount a {SIZE} tmpfs (needs root or CAP_SYS_ADMIN; uid {os.getuid()}): "
            f"{(out.stderr or out.stdout).strip()[:200]}"
        )
    try:
        yield SmallFs(mount)
    finally:
        if _run("umount", str(mount)).returncode != 0:
            _run("umount", "-l", str(mount))
