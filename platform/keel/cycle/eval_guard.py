"""The evaluation-overlap guard of mined rows: every evaluation set the gates use, on by default.

Sets: MMLU and CMMLU (test and dev questions: the gate suite and the 5-shot examples), the domain
held-out text (FAQ answers and FAQ pages) and the general held-out text (``general/{en,zh}/valid``),
found where the gates find them (the ``eval`` section: ``eval.data`` or the per-part paths; unset, the
demo data beside a checkout), plus any ``mining.eval_sets``. A mined text overlaps when it contains an
evaluation question or passage (:mod:`flywheel.overlap`) or is a near-duplicate of a whole evaluation
text (MinHash, the data pipeline's rule). Built once per process and set of files (a few seconds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from flywheel.config import MiningConfig
from flywheel.overlap import ContainmentIndex
from training.eval.config import EvalSettings

log = logging.getLogger("keel.cycle.eval_guard")

# repo/../shared/data beside a checkout (the demo's evaluation data); absent in an installed wheel
DEMO_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@dataclass
class EvalOverlapGuard:
    contains: list[ContainmentIndex]
    near: object | None = None  # training.data.heldout.EvalGuard over mining.eval_sets
    sets: dict[str, int] = field(default_factory=dict)  # set → texts indexed

    def overlap(self, text: str) -> str | None:
        for index in self.contains:
            if (hit := index.find(text)) is not None:
                return hit
        return self.near.overlap(text) if self.near is not None else None

    def __bool__(self) -> bool:
        return bool(self.sets)


def gate_sets(ev: EvalSettings) -> dict[str, Path]:
    """Where the gates read each evaluation set (only the parts that exist)."""
    explicit = [ev.data, ev.mmlu, ev.cmmlu, ev.general, ev.domain]
    if not any(explicit) and DEMO_DATA.is_dir():
        ev = ev.model_copy(update={"data": DEMO_DATA})
    return {k: v for k, v in ev.resolved().items() if v is not None and Path(v).exists()}


def _stamp(paths: list[Path]) -> tuple:
    out = []
    for p in paths:
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        out.append((str(p), tuple((str(f), f.stat().st_mtime_ns) for f in files if f.is_file())))
    return tuple(out)


def build_guard(mining: MiningConfig, ev: EvalSettings) -> EvalOverlapGuard | None:
    """The guard for these settings, or None when it is off (``mining.eval_guard: false``)."""
    if not mining.eval_guard:
        return None
    sets = gate_sets(ev)
    gate, counts = _gate_index(tuple(sorted((k, str(v)) for k, v in sets.items())), _stamp([*sets.values()]))
    guard = EvalOverlapGuard([gate], None, dict(counts))
    if mining.eval_sets:
        from training.data.heldout import EvalGuard
        from training.data.prepare import _eval_texts

        extra, near, n = ContainmentIndex(), EvalGuard(mining.dedup_threshold), 0
        for src in mining.eval_sets:
            for text, where in _eval_texts(str(Path(src).expanduser())):
                near.add(text, where)
                extra.add(text, where)
                n += 1
        guard.contains.append(extra)
        guard.near = near
        guard.sets["eval_sets"] = n
    if not guard:
        log.warning("no evaluation data found: mined rows are not checked for overlap (set eval.data)")
    return guard


@lru_cache(maxsize=4)
def _gate_index(sets: tuple, _stamp: tuple) -> tuple[ContainmentIndex, tuple]:
    """The gates' sets indexed once per process and version of their files (~3 s for the demo data)."""
    from training.eval.data import load_benchmark
    from training.eval.heldout import domain_heldout, general_heldout

    contains = ContainmentIndex()
    counts: dict[str, int] = {}
    for name, path in sets:
        before = contains.texts + contains.too_short
        if name in ("mmlu", "cmmlu"):
            bench = load_benchmark(Path(path), name)
            for subject in bench.subjects.values():
                for item in (*subject.test, *subject.dev):
                    contains.add(item.question, f"{name}/{item.id}")
        elif name == "domain":
            for part, texts in domain_heldout(Path(path)).parts.items():
                for t in texts:
                    contains.add(t.text, f"domain/{part}/{t.id}")
        elif name == "general":
            for texts in general_heldout(Path(path)).parts.values():
                for t in texts:
                    contains.add(t.text, f"general/{t.id}")
        counts[name] = contains.texts + contains.too_short - before
    return contains, tuple(counts.items())
