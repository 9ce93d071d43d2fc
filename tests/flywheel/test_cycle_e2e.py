"""End to end: a real `keel up` (vLLM engine), simulated traffic with feedback, `POST /admin/cycles`
(the same path as the CLI and the scheduler) → mine → SFT on the mined examples (short real training) →
a small gate suite → promotion by hot swap; the served version changes; a second cycle is refused while
the first runs; `keel cycle status` shows the nightly schedule's next run."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import yaml

from tests.eval.conftest import write_cmmlu, write_domain, write_general, write_mmlu
from tests.flywheel.test_watch_live import greedy
from tests.harness import PlatformProcess
from tests.swap.test_hot_swap import same_weights

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(base_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cycle-e2e")
    data = root / "data"
    write_mmlu(data / "mmlu")
    write_cmmlu(data / "cmmlu")
    write_general(data / "general")
    write_domain(data / "domain" / "tidb")
    p = PlatformProcess(
        data_dir=root / "keel",
        model_dir=base_model_dir,
        overrides=[
            f"eval.data={data}",
            "engine.kvcache_gib=1",
            "cycle.schedule.enabled=true",
            "cycle.schedule.cron=30 3 * * *",
            "cycle.schedule.timezone=Asia/Shanghai",
        ],
    )
    p.start()
    try:
        yield p, root
    finally:
        p.stop()


def _profile(root, min_sft: int) -> str:
    policy = root / "pass.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "bootstrap_samples": 200,
                "gates": {"general_en_bpb": {"metric": "general_en.bpb", "max_rise_pct": 1000}},
            }
        )
    )
    prof = root / "keel" / f"e2e-{min_sft}.yaml"  # profiles are read from the data dir (or the shipped ones)
    prof.write_text(
        yaml.safe_dump(
            {
                "cycle": {
                    "stages": ["sft"],
                    "min_sft_examples": min_sft,
                    # the canary has its own live tests (tests/swap/test_canary_live.py, the step's traffic
                    # rule in test_cycle_canary_step.py); here it would hang on the simulation's volume
                    "canary": {"enabled": False},
                    "policy": str(policy),
                    "eval": {"backend": "transformers", "gate_per_subject": 5, "gate_general_docs": 2},
                    "sft": {
                        "overrides": {
                            "max_steps": 2,
                            "max_length": 128,
                            "save_steps": 100,
                            # far enough that the candidate answers measurably unlike the base
                            "learning_rate": 1e-4,
                        },
                        "budget": {"wall_clock_s": 240},
                    },
                    "launcher": {"threads": 1, "nice": 10},
                }
            }
        )
    )
    return str(prof)


def _wait(p: PlatformProcess, cycle_id: str, timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = p.admin("GET", f"/admin/cycles/{cycle_id}").json()
        if c["status"] not in ("running",):
            return c
        time.sleep(2)
    raise AssertionError(f"cycle {cycle_id} still running after {timeout} s\n{p.log_tail()}")


def test_simulated_traffic_mined_trained_gated_and_promoted(platform):
    p, root = platform
    sim = p.cli("simulate", "--rate", "3", "--duration", "25", "--max-tokens", "24", "--seed", "3", "--json")
    summary = json.loads(sim.stdout)
    # the routed burst: every request answered whole and every one written to the request log
    n = summary["requests"]
    assert n >= 20 and summary["statuses"] == {"200": n} and not summary["errors"], summary
    ids = summary["request_ids"]
    rows = p.rows(ids, timeout=60)
    assert sorted(r["request_id"] for r in rows) == sorted(ids), (len(rows), len(ids))
    routes = {r["route"] for r in rows}
    assert {"domain", "chat"} <= routes, routes  # the router sent traffic down more than one route
    for r in rows:
        assert r["status_code"] == 200 and (r["response_text"] or "").strip(), r
        # an engine answer ended by the model or by max_tokens, never cut; refusals are canned
        assert r["route"] == "out_of_scope" or r["finish_reason"] in ("stop", "length"), r
    probe_key = p.create_key("e2e-probe")
    probe = "Hello there! How is your day going?"  # routed to chat: the engine answers it
    base_answer = greedy(p.url, probe_key, probe)
    assert base_answer is not None

    r = p.admin("POST", "/admin/cycles", json={"profile": _profile(root, 1), "stages": ["sft"]})
    assert r.status_code == 202, r.text
    cycle = r.json()
    # one at a time: a second request is refused with the running cycle's id
    again = p.admin("POST", "/admin/cycles", json={})
    assert again.status_code == 409 and cycle["cycle_id"] in again.json()["error"]["message"]

    # while the training child runs, the API and `keel cycle status` show its live progress
    shown, progress = [], []
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        c = p.admin("GET", f"/admin/cycles/{cycle['cycle_id']}").json()
        running = {s["name"]: s for s in c["steps"] if s["status"] == "running"}
        if c["status"] != "running":
            break
        if running.get("train:sft", {}).get("progress"):
            progress.append(running["train:sft"]["progress"])
            if len(shown) < 5:  # a few looks are enough (each is a CLI process)
                shown.append(p.cli("cycle", "status").stdout)
        time.sleep(1)
    done = _wait(p, cycle["cycle_id"])
    assert progress and progress[-1]["max_steps"] == 2 and progress[-1]["step"] >= 1, progress
    assert any("step 1 of 2" in t or "step 2 of 2" in t for t in shown), shown
    assert all(k in progress[-1] for k in ("loss", "tokens_per_s", "elapsed_s", "eta_s")), progress[-1]
    steps = {s["name"]: s for s in done["steps"]}
    assert done["status"] == "succeeded", (done["error"], p.log_tail())
    # rounded as a person reads it, not 2.6798269748687744
    assert "loss" in (st := p.cli("cycle", "show", cycle["cycle_id"]).stdout), st
    assert not any(len(w) > 8 and w.replace(".", "").isdigit() and "." in w for w in st.split()), st
    assert steps["mine"]["output"]["sft"] >= 1
    assert steps["train:sft"]["status"] == "done" and steps["train:sft"]["output"]["steps"] == 2
    assert done["outcome"] == "promoted", steps["gate"]["output"]
    version = steps["train:sft"]["output"]["version"]

    # served version updated: the registry, the engine pool and a fresh request's log row agree
    rows = p.admin("GET", "/admin/checkpoints").json()
    assert [r["version"] for r in rows if r["status"] == "serving"] == [version]
    key = p.create_key("e2e-after")
    resp = httpx.post(
        f"{p.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "keel", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text
    logged = p.rows([resp.json()["id"]])
    assert logged and logged[0]["checkpoint_version"] == version
    # what serves is the trained candidate by its output, not only by its label
    served = greedy(p.url, probe_key, probe)
    assert served is not None and not same_weights(served, base_answer), (
        "promoted by label, base's weights serve"
    )
    report = p.admin("GET", f"/admin/cycles/{cycle['cycle_id']}/report")
    assert report.status_code == 200 and "promoted" in report.text

    # the nightly schedule shows, in its timezone
    st = p.cli("cycle", "status").stdout
    assert "schedule: on" in st and "+08:00" in st, st


def test_a_stage_without_enough_data_is_skipped_with_its_reason(platform):
    p, root = platform
    r = p.admin("POST", "/admin/cycles", json={"profile": _profile(root, 100000), "stages": ["sft"]})
    assert r.status_code == 202, r.text
    done = _wait(p, r.json()["cycle_id"])
    steps = {s["name"]: s for s in done["steps"]}
    assert done["outcome"] == "nothing_to_train", done
    assert "fewer than the 100000 required" in steps["snapshot:sft"]["reason"]
    listed = p.cli("cycle", "list").stdout
    assert r.json()["cycle_id"][:20] in listed
