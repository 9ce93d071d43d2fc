"""The base model's conversion: the folder appears whole (manifest included) or not at all, and a process
that loses the race to convert keeps the winner's folder. The GGUF dequantization itself is stubbed
here (the suite's session fixture converts the real embedded model once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from keel.checkpoints import basemodel

from training.checkpoint import read_manifest


@pytest.fixture
def stub(monkeypatch, tmp_path):
    monkeypatch.setattr(basemodel, "embedded_gguf_dir", lambda: tmp_path / "gguf")
    calls = []

    def dequantize(src: Path, out: Path, then=None) -> None:
        calls.append(out)
        (out / "model.safetensors").write_bytes(b"ours")
        (out / "manifest.json").write_text('{"version": "base", "stage": "base"}')
        if then:
            then()

    return calls, dequantize


def _siblings(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir())


def test_conversion_appears_with_its_manifest_and_leaves_no_temp_folder(stub, monkeypatch, tmp_path):
    calls, dequantize = stub
    monkeypatch.setattr(basemodel, "_dequantize", dequantize)
    dest = tmp_path / "checkpoints" / "base"
    assert basemodel.convert_embedded(dest) == dest
    assert calls[0] != dest and not calls[0].exists()  # written beside it, then renamed
    assert read_manifest(dest).version == "base" and _siblings(dest) == ["base"]


def test_a_failed_conversion_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(basemodel, "embedded_gguf_dir", lambda: tmp_path / "gguf")

    def broken(src: Path, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(basemodel, "_dequantize", broken)
    dest = tmp_path / "checkpoints" / "base"
    with pytest.raises(OSError, match="disk full"):
        basemodel.convert_embedded(dest)
    assert _siblings(dest) == []


def test_the_loser_of_a_race_keeps_the_winners_folder(stub, monkeypatch, tmp_path):
    _, dequantize = stub
    dest = tmp_path / "checkpoints" / "base"

    def winner_finishes_first() -> None:
        dest.mkdir()
        (dest / "model.safetensors").write_bytes(b"theirs")
        (dest / "manifest.json").write_text('{"version": "base"}')

    monkeypatch.setattr(basemodel, "_dequantize", lambda s, o: dequantize(s, o, winner_finishes_first))
    assert basemodel.convert_embedded(dest) == dest
    assert (dest / "model.safetensors").read_bytes() == b"theirs" and _siblings(dest) == ["base"]


def test_a_folder_without_a_manifest_in_the_way_is_an_error(stub, monkeypatch, tmp_path):
    _, dequantize = stub
    monkeypatch.setattr(basemodel, "_dequantize", dequantize)
    dest = tmp_path / "checkpoints" / "base"
    dest.mkdir(parents=True)
    with pytest.raises(FileExistsError):
        basemodel.convert_embedded(dest)
