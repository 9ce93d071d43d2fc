"""One HTML page per cycle: its steps with times and hashes, and links to the dataset stats, the training
reports, the gate report and the promotion. Self-contained (no scripts, no external assets)."""

from __future__ import annotations

import html
import os
from pathlib import Path

from flywheel.cycle import CycleRecord, StepRecord, read_output
from flywheel.step_outputs import EvaluateOutput, GateOutput, PromoteOutput
from keelcommon.files import write_text_atomic

_CSS = """body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;
vertical-align:top;font-size:.9rem}th{background:#f4f4f4}.done{color:#186a3b}.failed{color:#b03a2e}
.skipped{color:#7d6608}table.inner{width:auto}table.inner td,table.inner th{padding:.1rem .5rem}.cancelled,.interrupted{color:#6c3483}code{font-size:.8rem}"""


def _link(target: str | None, label: str, base: Path) -> str:
    if not target:
        return ""
    p = Path(target)
    if not p.exists():
        return html.escape(label)
    rel = os.path.relpath(p, base)
    return f'<a href="{html.escape(rel)}">{html.escape(label)}</a>'


def _links(s: StepRecord, base: Path) -> list[str]:
    o = s.output
    out = []
    if s.name.startswith("snapshot:"):
        stats = o.get("stats") or (str(Path(o["path"]) / "stats.json") if o.get("path") else None)
        out.append(_link(stats, "dataset stats", base))
    if s.name.startswith("train:"):
        out += [_link(o.get("report"), "training report", base), _link(o.get("log"), "log", base)]
    if s.name == "evaluate":
        for role in ("baseline", "candidate"):
            if role in o:
                out.append(_link(o[role].get("eval"), f"{role} eval", base))
    if s.name == "gate":
        out += [_link(o.get("report"), "gate report", base), _link(o.get("decision"), "decision", base)]
    return [x for x in out if x]


def _summary(s: StepRecord) -> str:
    """The step's one-line summary from the step table (floats rounded), with the gate's list and the
    evaluation as a table where a line is not enough."""
    if s.status == "skipped":
        return html.escape(s.reason or "")
    if s.status == "failed":
        return html.escape(s.error or "")
    out = read_output(s.name, s.output)
    if isinstance(out, EvaluateOutput):
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
            for k, b, c in out.table()
        )
        return f"<table class='inner'><tr><th></th><th>baseline</th><th>candidate</th></tr>{rows}</table>"
    if isinstance(out, GateOutput):
        rows = "".join(
            f"<li>{'pass' if g['passed'] else 'FAIL'} {html.escape(g['gate'])}: {html.escape(g['reason'])}</li>"
            for g in out.gates
        )
        return f"<b>{'PASS' if out.passed else 'FAIL'}</b><ul>{rows}</ul>"
    if isinstance(out, PromoteOutput) and out.decision == "promoted":
        o = s.output
        return html.escape(
            f"promoted {out.version} (swap {o.get('swap_id', '')}, {o.get('strategy', '')}, "
            f"from {o.get('from_version', '')})"
        )
    if isinstance(out, PromoteOutput):
        return html.escape(f"{out.decision}: " + "; ".join(out.reasons))
    return html.escape(out.summary())


def write_report(path: Path, cycle: CycleRecord, steps: list[StepRecord]) -> Path:
    base = path.parent
    rows = []
    for s in steps:
        secs = f"{s.seconds:.1f}" if s.seconds is not None else ""
        rows.append(
            f"<tr><td>{html.escape(s.name)}</td><td class='{s.status}'>{s.status}</td><td>{secs}</td>"
            f"<td>{_summary(s)}</td><td>{' · '.join(_links(s, base))}</td>"
            f"<td><code>{html.escape(s.input_hash or '')}<br>{html.escape(s.output_hash or '')}</code></td></tr>"
        )
    head = (
        f"<h1>Cycle {html.escape(cycle.cycle_id)}</h1><p>status <b class='{cycle.status}'>{cycle.status}</b>"
        f" · outcome <b>{html.escape(str(cycle.outcome))}</b> · trigger {html.escape(cycle.trigger)}"
        f" · stages {', '.join(cycle.stages)}{' · dry run' if cycle.dry_run else ''}"
        f" · profile {html.escape(cycle.config.get('profile') or '-')}</p>"
        f"<p>serving at start: {html.escape(str(cycle.serving.get('version')))} · started "
        f"{cycle.started_at:%Y-%m-%d %H:%M:%S %Z} · finished "
        f"{cycle.finished_at:%Y-%m-%d %H:%M:%S %Z}</p>"
        if cycle.started_at and cycle.finished_at
        else f"<h1>Cycle {html.escape(cycle.cycle_id)}</h1>"
    )
    err = f"<p class='failed'>error: {html.escape(cycle.error)}</p>" if cycle.error else ""
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Keel cycle {html.escape(cycle.cycle_id)}</title>"
        f"<style>{_CSS}</style></head><body>{head}{err}<table><tr><th>step</th><th>status</th><th>s</th>"
        f"<th>result</th><th>links</th><th>input / output hash</th></tr>{''.join(rows)}</table></body></html>"
    )
    write_text_atomic(path, page)
    return path
