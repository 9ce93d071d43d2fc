"""The console's cycle panel says which step a running cycle is in and, for a training step, its live
progress, read from the progress file the training child rewrites each step (issue 26 item 7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from flywheel.cycle import CycleRecord, StepRecord
from tests.harness import engineless_platform


def test_running_training_step_shows_its_progress(tmp_path, restore_umask):
    from keel.app import create_app

    platform = engineless_platform(tmp_path)
    now = datetime.now(UTC)
    store = platform.cycles.store
    store.create(CycleRecord("cycle-x", "running", "cli", ["cpt"], False, {}, started_at=now))
    store.save_step(StepRecord("cycle-x", "mine", 0, "done", started_at=now, finished_at=now))
    store.save_step(StepRecord("cycle-x", "train:cpt", 1, "running", started_at=now))
    out = platform.cycles.steps.train_output("cycle-x", "cpt")
    work = out.parent / f".{out.name}.work"
    work.mkdir(parents=True)
    progress = {"step": 120, "max_steps": 700, "loss": 2.6798269748687744, "tokens_per_s": 251.37,
                "elapsed_s": 754.2, "eta_s": 1046.9}  # fmt: skip
    (work / "progress.json").write_text(json.dumps(progress))

    with TestClient(create_app(platform)) as client:
        r = client.get("/console/api/cycles", headers={"Authorization": f"Bearer {platform.admin_key}"})
        assert r.status_code == 200, r.text
        running = r.json()["running"]
        assert running["cycle_id"] == "cycle-x" and running["step"] == "train:cpt"
        assert (
            running["progress"] == "step 120 of 700 · loss 2.68 · 251 tokens/s · 12m34s elapsed · ETA 17m27s"
        )
        # the same line `keel cycle status` prints, from the same admin API
        show = client.get("/admin/cycles/cycle-x", headers={"Authorization": f"Bearer {platform.admin_key}"})
        assert {s["name"]: s.get("progress") for s in show.json()["steps"]}["train:cpt"] == progress
