"""Candidate vs baseline: evaluate both (or reuse their eval JSONs), compare, decide, report, link.

Outputs go beside the candidate: ``<cand>/eval/<suite>-vs-<baseline version>/{decision.json,report.html,
report.png}``, and the candidate's manifest gets an ``eval.gate`` entry pointing at them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from keelcommon.files import write_json_atomic
from training.checkpoint import Manifest, read_manifest, update_manifest
from training.eval.gates import GatePolicy, compare, decide, load_policy
from training.eval.report import write_report
from training.eval.runner import EvalConfig, ensure_eval


@dataclass
class ComparisonOutcome:
    decision: dict | None
    decision_path: Path | None
    report: Path
    png: Path
    deltas: dict


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]


def trained_stages(candidate: Path, baseline: Path, max_depth: int = 64) -> list[str] | None:
    """The stages trained from ``baseline`` to ``candidate``, oldest first, read from the manifests'
    parent folders; None when the chain does not lead to the baseline (then every gate binds)."""
    base = Path(baseline).resolve()
    cur = Path(candidate).resolve()
    stages: list[str] = []
    for _ in range(max_depth):
        if cur == base:
            return stages[::-1]
        m = read_manifest(cur)
        parent = (m.model_extra or {}).get("parent_path") if m is not None else None
        if m is None or not m.stage or not parent:
            return None
        stages.append(m.stage)
        cur = Path(parent).resolve()
    return None


def compare_checkpoints(
    candidate: Path,
    baseline: Path,
    cfg: EvalConfig,
    policy: GatePolicy | Path | None = None,
    apply_policy: bool = True,
    rerun: bool = False,
) -> ComparisonOutcome:
    base_ev = ensure_eval(baseline, cfg, rerun=rerun).result
    cand_ev = ensure_eval(candidate, cfg, rerun=rerun).result
    pol = policy if isinstance(policy, GatePolicy) else load_policy(policy)
    deltas = compare(cand_ev, base_ev, pol)
    trained = trained_stages(candidate, baseline)
    decision = decide(cand_ev, base_ev, pol, trained) if apply_policy else None
    out_dir = Path(candidate) / "eval" / f"{cfg.name}-vs-{_slug(base_ev['checkpoint']['version'])}"
    decision_path = None
    if decision is not None:
        decision["decided_at"] = datetime.now(UTC).isoformat()
        decision_path = out_dir / "decision.json"
        write_json_atomic(decision_path, decision)
    html, png = write_report(cand_ev, base_ev, deltas, decision, out_dir)
    rel = lambda p: str(Path(p).relative_to(candidate))  # noqa: E731

    def link(m: Manifest) -> None:
        entry = {
            "baseline": base_ev["checkpoint"]["version"],
            "suite": cfg.name,
            "report": rel(html),
            "png": rel(png),
        }
        if decision is not None:
            entry |= {
                "passed": decision["passed"],
                "decision": rel(decision_path),
                "at": decision["decided_at"],
            }
        m.eval = m.eval or {}
        m.eval["gate" if decision is not None else "comparison"] = entry

    update_manifest(candidate, link)
    return ComparisonOutcome(decision, decision_path, html, png, deltas)
