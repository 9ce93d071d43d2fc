"""Typed outputs of the cycle's steps, and how a person reads each one (the CLI and the report share it).

A step's output is stored as JSON in its row (what later steps read and the resume rule compares), so
every model accepts keys it does not name (``extra="allow"``): an output written by an older version still
reads. Floats are rounded where a person reads them, never where they are stored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def fmt(v: Any, digits: int = 3) -> str:
    """A number as a person reads it: 2.6798269748687744 → 2.68, 1234567 → 1,234,567; None → '-'."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0 or abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_line(p: dict[str, Any] | None) -> str:
    """A running training step as a person follows it: step n of N, loss, tokens/s, elapsed, ETA."""
    if not p:
        return ""
    of = f" of {fmt(p['max_steps'])}" if p.get("max_steps") else ""
    return (
        f"step {fmt(p.get('step'))}{of} · loss {fmt(p.get('loss'))} · {fmt(p.get('tokens_per_s'))} tokens/s"
        f" · {duration(p.get('elapsed_s'))} elapsed · ETA {duration(p.get('eta_s'))}"
    )


class StepOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    skipped: str | None = None

    def summary(self) -> str:
        return ""


class MineOutput(StepOutput):
    pairs: int = 0
    sft: int = 0
    kto: int = 0

    def summary(self) -> str:
        kto = f" · {self.kto} KTO examples" if self.kto else ""
        return f"{self.pairs} pairs · {self.sft} SFT examples{kto}"


class RouterOutput(StepOutput):
    flags: int = 0
    decision: str | None = None

    def summary(self) -> str:
        return f"{self.flags} route flags" + (f" · {self.decision}" if self.decision else "")


class SnapshotOutput(StepOutput):
    path: str | None = None
    rows: int | None = None
    docs_changed: int | None = None
    docs_total: int | None = None

    def summary(self) -> str:
        docs = (
            f" · {self.docs_changed} of {self.docs_total} documents new or changed"
            if self.docs_changed is not None
            else ""
        )
        return f"{fmt(self.rows)} rows{docs}"


class TrainOutput(StepOutput):
    version: str | None = None
    path: str | None = None
    steps: int | None = None
    first_loss: float | None = None
    loss: float | None = None
    budget: dict[str, Any] | None = None

    def summary(self) -> str:
        stop = (self.budget or {}).get("stopped_by")
        return (
            f"{self.version} · {fmt(self.steps)} steps · loss {fmt(self.first_loss)} → {fmt(self.loss)}"
            + (f" · stopped by {stop}" if stop else "")
        )


class EvaluateOutput(StepOutput):
    baseline: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None

    def table(self) -> list[tuple[str, str, str]]:
        """(metric, baseline, candidate) rows of the two runs' summaries, rounded."""
        b = (self.baseline or {}).get("summary") or {}
        c = (self.candidate or {}).get("summary") or {}
        rows = [
            ("version", str((self.baseline or {}).get("version")), str((self.candidate or {}).get("version")))
        ]
        for k in sorted(set(b) | set(c)):
            if isinstance(b.get(k), dict | list) or isinstance(c.get(k), dict | list):
                continue
            rows.append((k, fmt(b.get(k), 4), fmt(c.get(k), 4)))
        rows.append(
            ("seconds", fmt((self.baseline or {}).get("seconds")), fmt((self.candidate or {}).get("seconds")))
        )
        return rows

    def summary(self) -> str:
        return "; ".join(f"{k} {b} → {c}" for k, b, c in self.table()[1:4])


class GateOutput(StepOutput):
    passed: bool = False
    reasons: list[str] = []
    gates: list[dict[str, Any]] = []

    def summary(self) -> str:
        return "PASS" if self.passed else "FAIL: " + "; ".join(self.reasons[:2])


class CanaryOutput(StepOutput):
    decision: str | None = None  # promoted | rejected | inconclusive | stopped | failed | interrupted
    canary_id: str | None = None
    reason: str | None = None
    n_candidate: int | None = None
    n_champion: int | None = None

    def summary(self) -> str:
        return (
            f"{self.decision} after {fmt(self.n_candidate)} candidate / {fmt(self.n_champion)} champion requests"
            + (f": {self.reason}" if self.reason else "")
        )


class PromoteOutput(StepOutput):
    decision: str | None = None
    version: str | None = None
    reasons: list[str] = []

    def summary(self) -> str:
        return f"{self.decision} {self.version or ''}".strip()
