"""Tiny, repeated datasets so a few real steps on the embedded model provably lower the loss."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Training tests share 2 cores with everything else; one thread each keeps them predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")

CHAT = [
    {"role": "system", "content": "You answer questions about TiDB."},
    {"role": "user", "content": "What is TiDB?"},
    {"role": "assistant", "content": "TiDB is a distributed SQL database."},
    {"role": "user", "content": "Is it MySQL compatible?"},
    {"role": "assistant", "content": "Yes, it speaks the MySQL protocol."},
]
PREF = {
    "prompt": [{"role": "user", "content": "What is TiDB?"}],
    "chosen": [{"role": "assistant", "content": "A distributed SQL database."}],
    "rejected": [{"role": "assistant", "content": "A kind of fruit from Peru."}],
}
# unpaired signals (thumbs): more up than down, as users rate (the stage weighs the classes)
KTO_ROWS = [
    {
        "prompt": [{"role": "user", "content": "What is TiDB?"}],
        "completion": [{"role": "assistant", "content": "A distributed SQL database."}],
        "label": True,
    },
    {
        "prompt": [{"role": "user", "content": "What is TiDB?"}],
        "completion": [{"role": "assistant", "content": "A kind of fruit from Peru."}],
        "label": False,
    },
    {
        "prompt": [{"role": "user", "content": "Is TiDB MySQL compatible?"}],
        "completion": [{"role": "assistant", "content": "Yes, it speaks the MySQL protocol."}],
        "label": True,
    },
]
DOMAIN_TEXT = "TiDB 是 PingCAP 公司自主设计、研发的开源分布式关系型数据库，兼容 MySQL 协议。" * 4
GENERAL_TEXT = "The Nile is a major river in northeastern Africa that flows into the Mediterranean Sea. " * 3


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    """Snapshots for each stage, written with the real snapshot writer."""
    from training.data.snapshot import write_snapshot

    root = tmp_path_factory.mktemp("tiny-data")

    def cpt_fill(tmp: Path) -> dict:
        write_jsonl(tmp / "train.jsonl", [{"text": DOMAIN_TEXT}] * 4)
        write_jsonl(tmp / "eval" / "domain.jsonl", [{"text": DOMAIN_TEXT[:60]}])
        write_jsonl(tmp / "eval" / "general.jsonl", [{"text": GENERAL_TEXT}])
        return {"rows": 4}

    return {
        "cpt": write_snapshot(root / "cpt", "cpt", cpt_fill).path,
        "sft": write_snapshot(
            root / "sft",
            "sft",
            lambda t: {
                "rows": len(write_jsonl(t / "train.jsonl", [{"messages": CHAT}] * 4).read_text().splitlines())
            },
        ).path,
        "dpo": write_snapshot(
            root / "dpo",
            "dpo",
            lambda t: {"rows": len(write_jsonl(t / "train.jsonl", [PREF] * 4).read_text().splitlines())},
        ).path,
        "kto": write_snapshot(
            root / "kto",
            "kto",
            lambda t: {"rows": len(write_jsonl(t / "train.jsonl", KTO_ROWS * 2).read_text().splitlines())},
        ).path,
    }


TINY = {
    "max_length": 64,
    "per_device_train_batch_size": 2,
    "logging_steps": 1,
    "save_steps": 100,
    "report": True,
}
