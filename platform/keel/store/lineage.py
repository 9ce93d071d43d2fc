"""Lineage: request → feedback → pair / SFT example → dataset snapshot → checkpoint → gate → promotion.

Two questions, both answered from the platform's tables plus the export folders' provenance files:
- ``of_version(V)``: the cycle that made V, its datasets (kind → content hash, and for flywheel exports the
  requests and feedback their rows came from), the parent chain, gate results, promotions and the
  champion alias's moves to or from V;
- ``of_request(R)``: the request, its feedback, the pairs and examples mined from it, the exports that
  hold them and the checkpoints trained on those exports (and their descendants).
Request rows carry the API key's name, so simulated traffic (keys named ``simulate-...``) shows as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.errors import KeelError
from keel.store import aliases, canaries, registry
from keel.store.db import Database
from keel.store.rows import as_dicts
from keelcommon.jsonl import iter_jsonl

SIMULATED_PREFIX = "simulate"
MAX_IDS = 200  # request ids listed per dataset (all are counted)


class LineageError(KeelError, ValueError):
    """What a lineage question names does not exist."""

    status = 404
    code = "not_found"


def _table_exists(db: Database, name: str) -> bool:
    return bool(db.fetchall("SELECT 1 FROM information_schema.tables WHERE table_name = ?", [name]))


def _exports(db: Database) -> list[dict[str, Any]]:
    rows = as_dicts(db.cursor().execute("SELECT * FROM exports ORDER BY created_at"), ("stats",))
    for r in rows:
        st = r.get("stats") or {}
        r["parts"] = {"dpo": st.get("dpo_hash"), "sft": st.get("sft_hash"), "kto": st.get("kto_hash")}
    return rows


def _provenance(folder: Path, part: str) -> list[dict[str, Any]]:
    path = folder / part / "provenance.jsonl"
    if not path.is_file():
        return []
    return [row for _, row in iter_jsonl(path)]


def _key_names(db: Database, request_ids: set[str]) -> dict[str, str | None]:
    """request id → name of the key that sent it."""
    if not request_ids:
        return {}
    ids = sorted(request_ids)
    marks = ",".join("?" * len(ids))
    rows = db.fetchall(
        f"SELECT r.request_id, k.name FROM requests r LEFT JOIN api_keys k ON k.key_id = r.key_id "
        f"WHERE r.request_id IN ({marks})",
        ids,
    )
    return dict(rows)


def _dataset(db: Database, kind: str, digest: str, exports: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, "hash": digest}
    for e in exports:
        parts = [p for p, h in e["parts"].items() if h == digest] or (
            ["dpo", "sft", "kto"] if e["hash"] == digest else []
        )
        if not parts:
            continue
        rows = [row for p in parts for row in _provenance(Path(e["path"]), p)]
        reqs = {i for row in rows for i in row.get("request_ids", [])}
        fbs = {i for row in rows for i in row.get("feedback_ids", [])}
        names = _key_names(db, reqs)
        simulated = sum(1 for n in names.values() if n and n.startswith(SIMULATED_PREFIX))
        out.update(
            export_id=e["export_id"],
            path=e["path"],
            parts=parts,
            rows=len(rows),
            sources=_count(row.get("source") for row in rows),
            requests=len(reqs),
            simulated_requests=simulated,
            feedback=len(fbs),
            request_ids=sorted(reqs)[:MAX_IDS],
            feedback_ids=sorted(fbs)[:MAX_IDS],
            keys=_count(names.get(r) for r in reqs),
            on_disk=Path(e["path"]).is_dir(),
        )
        if note := (e.get("stats") or {}).get("backup"):  # a restore whose backup did not hold the folder
            out["backup"] = note
        break
    return out


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


def _cycle(db: Database, version: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(manifest.get("cycle"), str | dict):
        return {"cycle_id": manifest["cycle"]} if isinstance(manifest["cycle"], str) else manifest["cycle"]
    if not _table_exists(db, "cycle_steps"):
        return None
    rows = db.fetchall(
        "SELECT s.cycle_id, s.name, c.status, c.outcome, c.started_at, c.finished_at, c.report "
        "FROM cycle_steps s JOIN cycles c USING (cycle_id) "
        "WHERE s.name LIKE 'train:%' AND CAST(s.output AS VARCHAR) LIKE ? ORDER BY c.started_at DESC LIMIT 1",
        [f'%"{version}"%'],
    )
    if not rows:
        return None
    cid, step, status, outcome, started, finished, report = rows[0]
    return {
        "cycle_id": cid,
        "step": step,
        "status": status,
        "outcome": outcome,
        "started_at": started.isoformat() if started else None,
        "finished_at": finished.isoformat() if finished else None,
        "report": report,
    }


def of_version(db: Database, version: str) -> dict[str, Any]:
    try:
        cp = registry.get(db, version)
    except registry.RegistryError as e:
        raise LineageError(str(e)) from e
    chain, seen, parent = [], {version}, cp.parent
    while parent and parent not in seen:
        seen.add(parent)
        p = registry.find(db, parent)
        chain.append({"version": parent, "stage": p.stage if p else None, "registered": p is not None})
        parent = p.parent if p else None
    exports = _exports(db)
    datasets = [_dataset(db, k, h, exports) for k, h in sorted((cp.manifest.get("datasets") or {}).items())]
    evals = as_dicts(
        db.cursor().execute(
            "SELECT eval_id, kind, name, baseline, complete, passed, path, summary, recorded_at FROM evals "
            "WHERE version = ? ORDER BY recorded_at",
            [version],
        ),
        ("summary",),
    )
    swaps = as_dicts(
        db.cursor().execute(
            "SELECT swap_id, kind, from_version, to_version, strategy, status, reason, forced, by_whom, "
            "started_at, finished_at FROM swaps WHERE to_version = ? OR from_version = ? ORDER BY started_at",
            [version, version],
        ),
        (),
    )
    return {
        "version": version,
        "stage": cp.stage,
        "status": cp.status,
        "path": cp.path,
        "created_at": cp.created_at,
        "champion": aliases.get(db) == version,
        "cycle": _cycle(db, version, cp.manifest),
        "parents": chain,
        "datasets": datasets,
        "gates": [e for e in evals if e["kind"] == "gate"],
        "evals": [e for e in evals if e["kind"] != "gate"],
        "promotions": swaps,
        "champion_moves": aliases.history(db, aliases.CHAMPION, version),
        "watches": as_dicts(
            db.cursor().execute(
                "SELECT watch_id, previous, status, started_at, finished_at, reason, rollback_swap FROM watches "
                "WHERE version = ? ORDER BY started_at",
                [version],
            ),
            (),
        )
        if _table_exists(db, "watches")
        else [],
        "canaries": [
            {
                k: c[k]
                for k in ("canary_id", "champion", "share", "status", "reason", "started_at", "finished_at")
            }
            | {
                "n_candidate": (c.get("figures") or {}).get("n_candidate"),
                "n_champion": (c.get("figures") or {}).get("n_champion"),
            }  # fmt: skip
            for c in canaries.for_version(db, version)
        ],
    }


def of_request(db: Database, request_id: str) -> dict[str, Any]:
    rows = as_dicts(
        db.cursor().execute(
            "SELECT r.request_id, r.created_at, r.key_id, k.name AS key_name, r.route, r.checkpoint_version, "
            "r.status_code, r.messages FROM requests r LEFT JOIN api_keys k ON k.key_id = r.key_id "
            "WHERE r.request_id = ?",
            [request_id],
        ),
        ("messages",),
    )
    if not rows:
        raise LineageError(f"unknown request {request_id!r}")
    req = rows[0]
    req["simulated"] = bool(req["key_name"] and req["key_name"].startswith(SIMULATED_PREFIX))
    like = f'%"{request_id}"%'
    feedback = as_dicts(
        db.cursor().execute(
            "SELECT feedback_id, kind, rating, other_request_id, created_at FROM feedback "
            "WHERE request_id = ? OR other_request_id = ? ORDER BY created_at",
            [request_id, request_id],
        ),
        (),
    )
    pairs = as_dicts(
        db.cursor().execute(
            "SELECT pair_id, source, status, mining_run FROM pairs WHERE CAST(provenance AS VARCHAR) LIKE ? "
            "ORDER BY created_at",
            [like],
        ),
        (),
    )
    examples = as_dicts(
        db.cursor().execute(
            "SELECT example_id, source, mining_run FROM sft_examples WHERE CAST(provenance AS VARCHAR) LIKE ? "
            "ORDER BY created_at",
            [like],
        ),
        (),
    )
    kto = []
    if _table_exists(db, "kto_examples"):
        kto = as_dicts(
            db.cursor().execute(
                "SELECT example_id, source, label, mining_run FROM kto_examples WHERE request_id = ? "
                "ORDER BY created_at",
                [request_id],
            ),
            (),
        )
    datasets, hashes = [], set()
    for e in _exports(db):
        parts = [
            p
            for p in ("dpo", "sft", "kto")
            if any(request_id in r.get("request_ids", []) for r in _provenance(Path(e["path"]), p))
        ]
        if parts:
            datasets.append(
                {"export_id": e["export_id"], "path": e["path"], "hash": e["hash"], "parts": parts}
            )
            hashes |= {e["hash"], *(e["parts"][p] for p in parts)}
    direct, descendants = [], []
    cps = registry.list_all(db)
    for cp in cps:
        if hashes & set((cp.manifest.get("datasets") or {}).values()):
            direct.append({"version": cp.version, "stage": cp.stage, "status": cp.status})
    frontier = {c["version"] for c in direct}
    while frontier:
        children = [
            cp
            for cp in cps
            if cp.parent in frontier and cp.version not in {d["version"] for d in direct + descendants}
        ]
        descendants += [
            {"version": c.version, "stage": c.stage, "status": c.status, "parent": c.parent} for c in children
        ]
        frontier = {c.version for c in children}
    return {
        "request": req,
        "feedback": feedback,
        "pairs": pairs,
        "sft_examples": examples,
        "kto_examples": kto,
        "datasets": datasets,
        "checkpoints": direct,
        "descendants": descendants,
        "champion": aliases.get(db),
    }
