"""kill -9 of `keel up` (own vLLM engine, no router) in the steps after training: while the evaluation child
runs, then, after a restart and a resume, while the promotion swaps the engine. Each time the children (the
evaluation, the engine) die with the platform; the restarted platform records the cycle and its step
`interrupted`, serves one checkpoint, the one the registry names, whose greedy output is that checkpoint's;
the swap cut in half is recorded interrupted; resume finishes the cycle without running a done step again.

The kill during training is in test_cycle_platform (same real parts: DuckDB rows, a short real training run,
real evals in child processes). The gate is an in-process comparison of two eval files, with no child or
swap to cut in half, so it has no kill of its own here.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.flywheel.test_cycle_platform import _profile, env  # noqa: F401
from tests.flywheel.test_watch_live import greedy
from tests.harness import PlatformProcess, kill_platform
from tests.swap.test_hot_swap import engine_pids, same_weights

pytestmark = pytest.mark.slow
PROMPT = "How do I create a table in TiDB?"


def _until(p: PlatformProcess, cycle_id: str, found, what: str, timeout: float = 1200):
    """Poll until ``found()`` returns something, failing if the cycle stops running first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := found()) is not None:
            return got
        c = p.admin("GET", f"/admin/cycles/{cycle_id}").json()
        assert c["status"] == "running", (what, c, p.log_tail())
        time.sleep(0.2)
    raise AssertionError(f"{what} never happened\n{p.log_tail()}")


def _after_restart(p: PlatformProcess, cycle_id: str, step: str, base_answer) -> dict:
    """The restarted platform: the cycle and ``step`` interrupted, one checkpoint serving, its weights."""
    c = p.admin("GET", f"/admin/cycles/{cycle_id}").json()
    steps = {s["name"]: s for s in c["steps"]}
    assert c["status"] == "interrupted" and steps[step]["status"] == "interrupted", c
    serving = [r["version"] for r in p.admin("GET", "/admin/checkpoints").json() if r["status"] == "serving"]
    health = p.admin("GET", "/health").json()
    assert len(serving) == 1 and health["checkpoint_version"] == serving[0], (serving, health)
    if serving == ["base"]:  # the registry moves only once a swap succeeded: base's weights serve
        now = greedy(p.url, p.create_key(f"after-{step}"), PROMPT)
        assert same_weights(now, base_answer), (now, base_answer)
    return steps


def _resume(p: PlatformProcess, cycle_id: str) -> None:
    r = p.admin("POST", f"/admin/cycles/{cycle_id}/resume", json={})
    assert r.status_code == 202, r.text


# three engine starts, a short training run and three evaluations: on a loaded 2-core host more than the
# default 900 s
@pytest.mark.timeout(2400)
def test_kill_during_evaluate_and_promote_then_resume(env, base_model_dir):  # noqa: F811
    keel = env["root"] / "keel"
    keel.mkdir(exist_ok=True)
    prof = _profile(keel / "p.yaml", env["data"], env["pass"])  # profiles are read from the data dir
    sets = [f"eval.data={env['data']}", "engine.kvcache_gib=1", "router.enabled=false"]

    def platform() -> PlatformProcess:
        return PlatformProcess(data_dir=keel, model_dir=base_model_dir, overrides=sets).start(timeout=900)

    def engines(p: PlatformProcess) -> list[int]:
        return [pid for u in p.engine_urls() for pid in engine_pids("--port " + u.rsplit(":", 1)[1])]

    # 1. kill -9 while the evaluation child runs
    p = platform()
    try:
        base_answer = greedy(p.url, p.create_key("crash"), PROMPT)
        r = p.admin("POST", "/admin/cycles", json={"profile": str(prof)})
        assert r.status_code == 202, r.text
        cycle_id = r.json()["cycle_id"]

        def evaluating() -> int | None:
            for f in (keel / "cycles").glob("*/eval-*.pid"):
                try:
                    return int(json.loads(f.read_text())["pid"])  # the child leads its process group
                except (OSError, ValueError, KeyError):
                    pass  # being written
            return None

        child = _until(p, cycle_id, evaluating, "the evaluation")
        kill_platform(p, [child, *engines(p)], "a child")
    finally:
        p.stop()

    # 2. restart: interrupted at evaluate, base serves; resume, then kill -9 while the promotion swaps
    p = platform()
    try:
        steps = _after_restart(p, cycle_id, "evaluate", base_answer)
        assert steps["train:cpt"]["status"] == "done" and "gate" not in steps
        candidate = steps["train:cpt"]["output"]["version"]
        _resume(p, cycle_id)

        def swapping():
            rows = p.admin("GET", "/admin/swaps", params={"limit": 1}).json()
            running = rows and rows[0]["kind"] == "promote" and rows[0]["status"] == "running"
            return rows[0] if running else None

        swap = _until(p, cycle_id, swapping, "the promotion")
        assert swap["to_version"] == candidate
        kill_platform(p, engines(p), "an engine")
    finally:
        p.stop()

    # 3. restart: interrupted at promote, one checkpoint serves, the cut swap is recorded; resume finishes
    p = platform()
    try:
        _after_restart(p, cycle_id, "promote", base_answer)
        [cut] = [h for h in p.admin("GET", "/admin/swaps").json() if h["swap_id"] == swap["swap_id"]]
        assert cut["status"] == "interrupted" and cut["finished_at"], cut  # not left "running"
        _resume(p, cycle_id)
        deadline = time.monotonic() + 600
        while (c := p.admin("GET", f"/admin/cycles/{cycle_id}").json())["status"] == "running":
            assert time.monotonic() < deadline, p.log_tail()
            time.sleep(2)
        steps = {s["name"]: s for s in c["steps"]}
        assert (c["status"], c["outcome"]) == ("succeeded", "promoted"), (c, p.log_tail())
        attempts = {name: (s["status"], s["attempts"]) for name, s in steps.items()}
        once = ("mine", "snapshot:cpt", "train:cpt", "gate")
        assert all(attempts[n] == ("done", 1) for n in once), attempts  # done before a kill: not again
        assert attempts["evaluate"] == attempts["promote"] == ("done", 2), attempts  # the two cut short
        serving = [
            r["version"] for r in p.admin("GET", "/admin/checkpoints").json() if r["status"] == "serving"
        ]
        assert serving == [candidate] and p.admin("GET", "/health").json()["checkpoint_version"] == candidate
        after = greedy(p.url, p.create_key("after"), PROMPT)
        assert not same_weights(after, base_answer), (after, base_answer)  # the candidate's weights serve
        assert not list((keel / "cycles" / cycle_id).glob("*.pid"))  # no child left behind
    finally:
        p.stop()
