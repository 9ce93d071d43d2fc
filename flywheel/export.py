"""Export reviewed pairs and SFT examples as an immutable dataset snapshot in TRL's formats.

    <out>/dpo/train.jsonl        {"prompt": [messages], "chosen": [assistant], "rejected": [assistant]}
    <out>/dpo/provenance.jsonl   one line per train row: pair id, source, request/feedback ids, reviews
    <out>/dpo/snapshot.json      {"kind": "dpo", "hash": ...}  (the layout `keel train dpo` reads)
    <out>/sft/...                {"messages": [...]}, kind "sft"
    <out>/snapshot.json          both hashes, counts and one hash over everything; written last

The hash of each part is sha256 over its JSONL files (relative name, NUL, bytes) in name order — the
same rule the training data pipeline uses, so `load_snapshot` accepts the parts as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flywheel.errors import FlywheelError


class ExportError(FlywheelError, ValueError):
    pass


@dataclass(frozen=True)
class ExportResult:
    path: Path
    hash: str
    dpo_hash: str
    sft_hash: str
    pairs: int
    sft: int


def content_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.jsonl")):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"


def _write_part(folder: Path, kind: str, rows: Iterable[tuple[dict, dict]]) -> tuple[str, int]:
    folder.mkdir(parents=True)
    n = 0
    with (
        (folder / "train.jsonl").open("w", encoding="utf-8") as tf,
        (folder / "provenance.jsonl").open("w", encoding="utf-8") as pf,
    ):
        for train, prov in rows:
            tf.write(_line(train))
            pf.write(_line(prov))
            n += 1
    digest = content_hash(folder)
    meta = {"kind": kind, "hash": digest, "files": ["provenance.jsonl", "train.jsonl"], "rows": n}
    (folder / "stats.json").write_text(json.dumps({"rows": n}), encoding="utf-8")
    (folder / "snapshot.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return digest, n


def dpo_row(prompt: list[dict[str, Any]], chosen: str, rejected: str) -> dict[str, Any]:
    """TRL's conversational preference format (implicit prompt split: prompt + one assistant turn each)."""
    return {
        "prompt": [{"role": m["role"], "content": m.get("content") or ""} for m in prompt],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def sft_row(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"messages": [{"role": m["role"], "content": m.get("content") or ""} for m in messages]}


def write_export(
    dest: Path,
    pairs: Iterable[tuple[dict, dict]],
    sft: Iterable[tuple[dict, dict]],
    info: dict[str, Any] | None = None,
) -> ExportResult:
    """``pairs``/``sft``: (TRL row, provenance) tuples. Written under a temporary name, then renamed."""
    dest = Path(dest).expanduser()
    if dest.exists():
        raise ExportError(f"{dest} already exists (snapshots are immutable; choose a new name)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        dpo_hash, n_pairs = _write_part(tmp / "dpo", "dpo", pairs)
        sft_hash, n_sft = _write_part(tmp / "sft", "sft", sft)
        digest = hashlib.sha256(f"dpo:{dpo_hash}\nsft:{sft_hash}\n".encode()).hexdigest()
        meta = {
            "kind": "flywheel",
            "hash": digest,
            "parts": {"dpo": {"hash": dpo_hash, "rows": n_pairs}, "sft": {"hash": sft_hash, "rows": n_sft}},
            "created_at": datetime.now(UTC).isoformat(),
            **(info or {}),
        }
        (tmp / "snapshot.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(dest, digest, dpo_hash, sft_hash, n_pairs, n_sft)
