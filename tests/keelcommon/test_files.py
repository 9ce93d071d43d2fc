"""keelcommon.files: a target is the old file or the whole new one, never half; errors leave no temp file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keelcommon.files import (
    atomic_folder,
    content_hash,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def _leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


@pytest.mark.parametrize("fails", ["fsync", "replace"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch, fails):
    target = tmp_path / "model.json"
    write_json_atomic(target, {"v": 1})

    def boom(*a, **kw):
        raise OSError(f"{fails} failed")

    monkeypatch.setattr(os, fails, boom)
    with pytest.raises(OSError, match=f"{fails} failed"):
        write_json_atomic(target, {"v": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": 1}
    assert _leftovers(tmp_path, "model.json") == []


def test_the_file_and_its_folder_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    write_text_atomic(tmp_path / "sub" / "a.txt", "héllo")
    assert synced == ["file", "dir"]
    assert (tmp_path / "sub" / "a.txt").read_text(encoding="utf-8") == "héllo"


def test_a_new_file_gets_the_umask_mode_like_any_other(tmp_path):
    write_bytes_atomic(tmp_path / "a.bin", b"x")
    (tmp_path / "b.bin").write_bytes(b"x")
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == stat.S_IMODE(
        (tmp_path / "b.bin").stat().st_mode
    )


WRITER = """
import sys
from keelcommon.files import write_bytes_atomic
target, size = sys.argv[1], int(sys.argv[2])
n = 0
while True:
    write_bytes_atomic(target, (b"AB"[n % 2 : n % 2 + 1]) * size)
    n += 1
    print(n, flush=True)
"""


def test_a_writer_killed_mid_write_never_leaves_half_a_file(tmp_path):
    """A real child rewrites a 16 MiB file in a loop and is killed at once (SIGKILL, no cleanup)."""
    target, size = tmp_path / "big.bin", 16 << 20
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), str(size)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "1"  # one whole file is in place
        time.sleep(0.05)  # the next write is under way
    finally:
        child.kill()
        child.wait()
    data = target.read_bytes()
    assert len(data) == size and data in (b"A" * size, b"B" * size)


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "ckpt"
    with pytest.raises(RuntimeError, match="half way"), atomic_folder(dest) as tmp:
        (tmp / "weights").write_text("w")
        raise RuntimeError("half way")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(dest) as tmp:
        (tmp / "weights").write_text("w")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"] and (dest / "weights").read_text() == "w"
    with pytest.raises(FileExistsError), atomic_folder(dest):
        pass


def test_atomic_folder_refuses_a_destination_that_appears_meanwhile(tmp_path):
    dest = tmp_path / "ckpt"
    with pytest.raises(FileExistsError, match="appeared"), atomic_folder(dest) as tmp:
        (tmp / "mine").write_text("m")
        dest.mkdir()
        (dest / "theirs").write_text("t")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"] and [p.name for p in dest.iterdir()] == ["theirs"]


def test_content_hash_follows_the_data_files_only(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n')
    before = content_hash(tmp_path)
    (tmp_path / "stats.json").write_text("{}")
    assert content_hash(tmp_path) == before
    (tmp_path / "a.jsonl").write_text('{"x": 2}\n')
    assert content_hash(tmp_path) != before
