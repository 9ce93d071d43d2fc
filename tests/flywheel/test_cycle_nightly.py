"""The nightly job for real: a `keel up` whose cycle schedule is a crontab (every whole minute, the nearest
cron time to "a minute ahead") fires through APScheduler's CronTrigger in the platform process, and the
cycle row it creates is there. The scheduled cycle is a cheap one that fails fast (its CPT source folder is
gone): the failure is the cycle row's status and error, and `/metrics` counts it.

The platform needs no engine (it points at an unreachable one and starts in seconds); the wait for the
cron is at most a minute.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from tests.flywheel.test_export_cli import _start_engineless
from tests.harness import PlatformProcess

pytestmark = pytest.mark.slow


def test_the_cron_fires_on_a_live_platform_and_a_failed_run_is_a_row_and_a_metric(base_model_dir, tmp_path):
    gone = tmp_path / "docs-removed"
    p = PlatformProcess(
        data_dir=tmp_path / "keel",
        model_dir=base_model_dir,
        overrides=[
            'engine.external_urls=["http://127.0.0.1:9"]',
            "cycle.schedule.enabled=true",
            "cycle.schedule.cron='* * * * *'",  # quoted: a bare * is a YAML alias
            "cycle.schedule.timezone=Asia/Shanghai",
            "cycle.stages=[cpt]",
            "cycle.router_refit=false",
            f"cycle.cpt_data.sources=[{gone}]",
        ],
    )
    _start_engineless(p)
    try:
        st = p.admin("GET", "/admin/cycles/status").json()
        assert st["schedule"]["active"] is True, st
        next_run = datetime.fromisoformat(st["schedule"]["next_run"])
        assert next_run.second == 0 and next_run.utcoffset() == timedelta(hours=8)  # a cron time, in its zone
        wait_s = (next_run - datetime.now(next_run.tzinfo)).total_seconds()
        assert wait_s <= 61, wait_s
        # A slow start can pass a whole minute before the first status call (CI did): the cron has then
        # already fired, and its row is the one to check; otherwise nothing may have run yet.
        early = p.admin("GET", "/admin/cycles").json()

        deadline = time.monotonic() + wait_s + 60
        rows: list[dict] = early
        while time.monotonic() < deadline:
            rows = p.admin("GET", "/admin/cycles").json()
            if rows and min(rows, key=lambda r: r["started_at"])["status"] != "running":
                break
            time.sleep(1)
        assert rows, f"no cycle row {wait_s + 60:.0f} s after the cron time\n{p.log_tail()}"
        c = min(rows, key=lambda r: r["started_at"])  # the first run the cron fired
        assert c["trigger"] == "schedule"
        started = datetime.fromisoformat(c["started_at"])
        assert started.tzinfo is not None  # TIMESTAMPTZ: an aware time
        fired_at = (
            next_run if not early else started.astimezone(next_run.tzinfo).replace(second=0, microsecond=0)
        )
        assert abs((started - fired_at).total_seconds()) < 30, (started, fired_at, early)  # the cron fired it

        # the run failed: a failed row naming the reason, and a counter an alert can watch
        assert c["status"] == "failed", c
        assert "CPT source not found" in c["error"] and str(gone) in c["error"], c["error"]
        shown = p.admin("GET", f"/admin/cycles/{c['cycle_id']}").json()
        steps = {s["name"]: s["status"] for s in shown["steps"]}
        assert steps["mine"] == "done" and steps["snapshot:cpt"] == "failed", steps
        failed = [r for r in p.admin("GET", "/admin/cycles").json() if r["status"] == "failed"]
        from keel.metrics import parse

        fams = parse(p.admin("GET", "/metrics").text)
        (sample,) = fams["keel_cycle_scheduled_failures"].samples
        assert sample.value == len(failed) >= 1
    finally:
        p.stop()
