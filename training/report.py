"""One report per run: report.png (curves) and report.html (curves + final metrics + config)."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, int | float) and math.isfinite(v):
            xs.append(r.get("step", 0))
            ys.append(v)
    return xs, ys


def write_report(folder: Path, records: list[dict[str, Any]], title: str, summary: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, list[str]]] = [("training loss", ["loss"]), ("learning rate", ["learning_rate"])]
    ppl_keys = sorted({k for r in records for k in r if k.endswith("_ppl")})
    if ppl_keys:
        panels.append(("validation perplexity", ppl_keys))
    dpo_keys = [k for k in ("rewards/margins", "rewards/accuracies") if any(k in r for r in records)]
    if dpo_keys:
        panels.append(("DPO rewards", dpo_keys))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            xs, ys = _series(records, key)
            ax.plot(xs, ys, marker="." if len(xs) < 50 else None, label=key)
        ax.set_title(name)
        ax.set_xlabel("step")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    png = folder / "report.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)

    img = base64.b64encode(png.read_bytes()).decode()
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v, default=str))}</td></tr>"
        for k, v in summary.items()
    )
    (folder / "report.html").write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><img src='data:image/png;base64,{img}'>"
        f"<p>panels: {html.escape(', '.join(name for name, _ in panels))}</p>"
        f"<table border=1 cellpadding=3>{rows}</table>",
        encoding="utf-8",
    )
    return png
