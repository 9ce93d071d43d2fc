from __future__ import annotations

import json

import pytest

from training.checkpoint import CheckpointError, build_manifest, is_checkpoint, write_checkpoint


def _manifest():
    return build_manifest(
        version="v1", parent="base", stage="sft", datasets={"sft": "abc"}, config={}, steps=3, metrics={}
    )


def test_checkpoint_appears_complete_with_manifest(tmp_path):
    dest = write_checkpoint(tmp_path / "v1", lambda d: (d / "w.bin").write_bytes(b"x"), _manifest())
    m = json.loads((dest / "manifest.json").read_text())
    assert is_checkpoint(dest) and (dest / "w.bin").exists()
    for key in (
        "version",
        "parent",
        "stage",
        "datasets",
        "config",
        "steps",
        "metrics",
        "git_commit",
        "created_at",
    ):
        assert key in m
    assert m["git_commit"]  # the tests run inside the repo


def test_failed_write_leaves_nothing(tmp_path):
    def boom(d):
        (d / "half.bin").write_bytes(b"x")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_checkpoint(tmp_path / "v2", boom, _manifest())
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "v3").mkdir()
    with pytest.raises(CheckpointError):
        write_checkpoint(tmp_path / "v3", lambda d: None, _manifest())
