"""The router refit step: route flags from the feedback table → labelled examples → gated refit.

Called by `keel router train` (through the admin API) and as a flywheel cycle step. The decision is
shaped like a checkpoint gate's (passed, gates, reasons) and is returned whole, so the caller records
it as it records a gate; a refused candidate is never written (unless forced) and never served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.config import KeelSettings
from keel.store.db import Database
from keel.store.router_flags import route_flags


def router_model_path(settings: KeelSettings) -> Path:
    """Where refits write and the platform reads the router model: router.model_file, else
    <data_dir>/router/model.json (the packaged model serves until a first refit passes)."""
    if settings.router.model_file:
        return Path(settings.router.model_file).expanduser()
    return settings.data_dir / "router" / "model.json"


def serving_model_file(settings: KeelSettings) -> Path | None:
    """The model file the platform should serve at start: a refitted one if there is one."""
    path = router_model_path(settings)
    return path if path.exists() else settings.router.model_file


def run_router_fit(
    db: Database, settings: KeelSettings, router: Any = None, force: bool = False, dry_run: bool = False
) -> dict[str, Any]:
    """Fit on intents + tuning half + route flags, gate on the test half, write and serve on a pass."""
    from serving.rag.embedder import load_embedder
    from serving.router.fit import refit
    from serving.router.intents import load_intents

    flags = route_flags(db)
    target = router_model_path(settings)
    result = refit(
        load_embedder(settings.rag.embedder),
        flagged=[(f["text"], f["intent"]) for f in flags],
        model_path=target,
        intents=load_intents(settings.router.intents_file),
        write=not dry_run,
        force=force,
        gate=settings.router.refit_gate,
    )
    served = bool(result.written and router is not None and router.use_model(result.model))
    return result.decision | {
        "flags": len(flags),
        "flag_ids": [f["feedback_id"] for f in flags],
        "dry_run": dry_run,
        "served": served,
        "model_file": str(target),
    }
