"""The registry's record of eval runs and gate decisions (rows in ``evals``, manifest kept in step).

Eval itself only writes files beside the checkpoint (DESIGN.md: child processes never open DuckDB);
the CLI, or the platform's admin API while it runs, records them here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from keel.store import registry
from keel.store.db import Database


class EvalRecord(BaseModel):
    """What the CLI sends: the checkpoint folder and the file eval wrote for it."""

    kind: Literal["run", "gate", "comparison"]
    checkpoint: str
    path: str  # eval JSON (run), decision.json (gate) or report.html (comparison)


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise registry.RegistryError(f"{path}: not found") from e
    except json.JSONDecodeError as e:
        raise registry.RegistryError(f"{path}: not valid JSON") from e


def _version_for(db: Database, folder: Path) -> str:
    """The registered version of ``folder``; registers it as a candidate when it is new."""
    folder = folder.expanduser().resolve()
    for cp in registry.list_all(db):
        if Path(cp.path).resolve() == folder:
            return cp.version
    return registry.add(db, folder).version


def record(db: Database, rec: EvalRecord) -> dict[str, Any]:
    folder = Path(rec.checkpoint).expanduser().resolve()
    path = Path(rec.path).expanduser().resolve()
    version = _version_for(db, folder)
    if rec.kind == "run":
        ev = _load(path)
        name, baseline, passed = ev["name"], None, None
        complete = bool(ev.get("complete"))
        summary = {
            k: ev[k]["summary"].get("overall", ev[k]["summary"])
            for k in ("mmlu", "cmmlu", "domain", "general")
            if k in ev
        }
        eval_id = f"{version}/{name}"
    else:
        name = path.parent.name  # <suite>-vs-<baseline>
        if rec.kind == "gate":
            d = _load(path)
            baseline, passed, complete = d.get("baseline"), bool(d.get("passed")), None
            if isinstance(baseline, dict):  # decision.json names the checkpoint: {path, version, ...}
                baseline = baseline.get("version")
            summary = {"reasons": d.get("reasons", []), "gates": d.get("gates", [])}
        else:
            baseline, passed, complete, summary = name.partition("-vs-")[2] or None, None, None, {}
        eval_id = f"{version}/{name}"
    db.execute(
        "INSERT OR REPLACE INTO evals "
        "(eval_id, version, kind, name, baseline, complete, passed, path, summary, recorded_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
        [
            eval_id,
            version,
            rec.kind,
            name,
            baseline,
            complete,
            passed,
            str(path),
            json.dumps(summary, default=str),
        ],
    )
    # The checkpoints row keeps a copy of the manifest: refresh it so eval links and the gate show there too.
    live = registry.read_manifest(folder)
    if live is not None:
        db.execute(
            "UPDATE checkpoints SET manifest = ? WHERE version = ?", [json.dumps(live, default=str), version]
        )
    return get(db, eval_id)


_COLS = "eval_id, version, kind, name, baseline, complete, passed, path, summary, recorded_at"


def _row(r: tuple) -> dict[str, Any]:
    d = dict(zip([c.strip() for c in _COLS.split(",")], r, strict=True))
    d["summary"] = json.loads(d["summary"]) if isinstance(d["summary"], str) else d["summary"]
    d["recorded_at"] = d["recorded_at"].isoformat() if d["recorded_at"] is not None else None
    return d


def get(db: Database, eval_id: str) -> dict[str, Any]:
    rows = db.fetchall(f"SELECT {_COLS} FROM evals WHERE eval_id = ?", [eval_id])
    if not rows:
        raise registry.RegistryError(f"unknown eval {eval_id!r}")
    return _row(rows[0])


def list_for(db: Database, version: str | None = None) -> list[dict[str, Any]]:
    if version is None:
        rows = db.fetchall(f"SELECT {_COLS} FROM evals ORDER BY recorded_at")
    else:
        rows = db.fetchall(f"SELECT {_COLS} FROM evals WHERE version = ? ORDER BY recorded_at", [version])
    return [_row(r) for r in rows]
