"""`keel data prepare` streams: readers are lazy and memory does not grow with the corpus size."""

from __future__ import annotations

import json
import random
import string
import tracemalloc
from pathlib import Path

import pytest

from training.data import readers
from training.data.prepare import make_prepare_config, prepare
from training.data.snapshot import SnapshotError


def write_corpus(path: Path, docs: int, seed: int) -> int:
    """``docs`` distinct ~16 KB documents (random words, so MinHash keeps them all); returns bytes."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(4000)]
    with path.open("w", encoding="utf-8") as f:
        for _ in range(docs):
            f.write(json.dumps({"text": " ".join(rng.choices(vocab, k=2500))}) + "\n")
    return path.stat().st_size


def peak_prepare(tmp: Path, docs: int) -> tuple[int, int, int]:
    src = tmp / f"corpus-{docs}.jsonl"
    size = write_corpus(src, docs, seed=docs)
    cfg = make_prepare_config({"kind": "cpt", "sources": [str(src)], "output": str(tmp / f"snap-{docs}")})
    tracemalloc.start()
    try:
        snap = prepare(cfg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = json.loads((snap.path / "stats.json").read_text())["kept"]
    return size, peak, kept


@pytest.mark.slow  # ~1 min under tracemalloc on the shared 2 cores
def test_prepare_memory_does_not_grow_with_the_corpus(tmp_path):
    small_size, small_peak, small_kept = peak_prepare(tmp_path, 40)
    big_size, big_peak, big_kept = peak_prepare(tmp_path, 160)
    assert (small_kept, big_kept) == (40, 160)
    # Holding the corpus would cost at least one byte per input byte; streaming only adds the dedup
    # index entries (a few hundred bytes per document) on top of a constant working set (MinHash
    # permutations, one document's shingles).
    assert big_peak - small_peak < 0.25 * (big_size - small_size), (small_peak, big_peak, big_size)


def test_readers_are_lazy(tmp_path):
    """The first record arrives before the rest of the file is parsed (a bad last line not yet seen)."""
    src = tmp_path / "t.jsonl"
    src.write_text(json.dumps({"text": "first document"}) + "\n" + "{not json\n", encoding="utf-8")
    rows = readers.iter_text(src)
    assert next(rows).data["text"] == "first document"
    try:
        next(rows)
    except SnapshotError as e:
        assert ":2" in str(e)
    else:
        raise AssertionError("the malformed second line was not reported")
