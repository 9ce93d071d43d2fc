"""Promote and roll back under load, both strategies: zero failed requests, one switch point per swap."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time

import httpx
import pytest
from keel.simulate.probe import chat_body, whole_answer

from bench.support.derive import derive_checkpoint
from tests.harness import process_group_alive

pytestmark = pytest.mark.slow


LIGHT_PAUSE_S = 1.5


class Load:
    """Concurrent streaming and non-streaming requests until stopped; records every outcome."""

    def __init__(self, url: str, key: str, workers: int = 4, t0: float | None = None):
        self.url, self.key, self.workers = url, key, workers
        self.ok: list[str] = []
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self.t0 = time.monotonic() if t0 is None else t0
        self._stop = threading.Event()
        # While a blue/green engine starts, only worker 0 keeps sending, one request every LIGHT_PAUSE_S: on
        # 2 CPU cores a busy vLLM CPU engine takes both (its worker computes on one, its EngineCore spins on
        # sched_yield on the other while it waits for the worker, and only goes idle 1 s after the last
        # step), so back-to-back requests starved the new engine's start-up for 2-6 minutes. Requests still
        # flow, streaming and not, before, during and after the switch.
        self.light = threading.Event()
        self._threads = [
            threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(workers)
        ]

    def _worker(self, i: int) -> None:
        n = 0
        with httpx.Client(timeout=180, headers={"Authorization": f"Bearer {self.key}"}) as c:
            while not self._stop.is_set():
                if i > 0 and self.light.is_set():
                    time.sleep(0.1)
                    continue
                if i == 0 and self.light.is_set():
                    time.sleep(LIGHT_PAUSE_S)
                stream = (i + n) % 2 == 0
                n += 1
                body = chat_body(f"Say something about the number {n}.", 8, stream)
                t0 = time.monotonic()
                try:
                    r = c.post(f"{self.url}/v1/chat/completions", json=body)
                    complete = whole_answer(r, stream)
                    if complete:
                        self.ok.append(r.headers["x-request-id"])
                        self.latencies.append(time.monotonic() - t0)
                    else:
                        self.failures.append(f"{self._when(t0)} {r.status_code}: {r.text[:200]}")
                except Exception as e:  # noqa: BLE001 - any failure counts
                    self.failures.append(
                        f"{self._when(t0)} worker {i} {'stream' if stream else 'plain'}: {e!r}"
                    )

    def tally(self) -> str:
        slowest = max(self.latencies, default=0.0)
        return f"{len(self.ok)} ok, {len(self.failures)} failed, slowest {slowest:.1f} s"

    def _when(self, sent: float) -> str:
        # sent/failed on the load's clock, to line a failure up with the swap phases _say prints
        return f"[sent {sent - self.t0:.1f} s, failed {time.monotonic() - self.t0:.1f} s]"

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def wait_for(self, n: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while len(self.ok) + len(self.failures) < n and time.monotonic() < deadline:
            time.sleep(0.2)

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(200)


def versions_in_dispatch_order(platform, ids: list[str]) -> list[str]:
    rows = []
    for i in range(0, len(ids), 200):
        rows += platform.rows(ids[i : i + 200], timeout=30)
    assert len(rows) == len(ids)
    rows.sort(key=lambda r: r["meta"]["dispatched_at"])
    return [r["checkpoint_version"] for r in rows]


def switches(seq: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(seq, seq[1:], strict=False) if a != b]


PROBE = {
    "model": "keel",
    "messages": [{"role": "user", "content": "Name three colours of the rainbow."}],
    "max_tokens": 8,
    "temperature": 0,
    "logprobs": True,
}


def answer(url: str, key: str) -> tuple[str, list[float]]:
    """What the served weights answer to one fixed greedy prompt: text and per-token log-probabilities."""
    r = httpx.post(
        f"{url}/v1/chat/completions", json=PROBE, headers={"Authorization": f"Bearer {key}"}, timeout=180
    )
    r.raise_for_status()
    choice = r.json()["choices"][0]
    return choice["message"]["content"], [t["logprob"] for t in choice["logprobs"]["content"]]


def same_weights(a: tuple[str, list[float]], b: tuple[str, list[float]]) -> bool:
    # batching beside the load moves CPU fp32 log-probabilities by ~1e-5; other weights move them by >0.1
    return (
        a[0] == b[0]
        and len(a[1]) == len(b[1])
        and all(abs(x - y) < 2e-3 for x, y in zip(a[1], b[1], strict=True))
    )


def _say(t0: float, what: str) -> None:
    # shown under "Captured stdout" when the test fails, so a slow CI run says where its time went
    print(f"[{time.monotonic() - t0:7.1f} s] {what}", flush=True)


# Two blue/green engine starts (each may take one retry of swap.start_timeout_s on a starved 2-core host)
# on top of the fixture's own start: the default 900 s is not a budget for that.
@pytest.mark.timeout(2400)
def test_promote_and_rollback_under_load_both_strategies(swap_platform, base_model_dir):
    """One steady load across four swaps: in place (same weights layout) and blue/green (new chat template),
    each candidate with changed weights: the answer to a fixed greedy prompt changes at each promotion and
    comes back at each rollback. A second swap sent while the blue/green one runs is refused."""
    t0 = time.monotonic()
    root = swap_platform.root
    v2 = derive_checkpoint(base_model_dir, root / "v2", "v2", scale=1.05)
    v3 = derive_checkpoint(base_model_dir, root / "v3", "v3", scale=1.03, template_note="new template")
    for cp in (v2, v3):
        swap_platform.cli("checkpoints", "add", str(cp))
    engines = {"before": swap_platform.engine_urls()}
    key = swap_platform.create_key("load")
    base_answer = answer(swap_platform.url, key)
    answers: dict[str, tuple[str, list[float]]] = {}
    refused_overlap: list[subprocess.CompletedProcess] = []
    with Load(swap_platform.url, key, t0=t0) as load:

        def swap(*args: str) -> str:
            # full load for in-place swaps; light (but never stopped) while a blue/green engine starts
            if strategy == "blue_green":
                load.light.set()
            try:
                if strategy == "blue_green" and args[0] == "promote":
                    out = overlapped(*args)
                else:
                    out = swap_platform.cli(*args).stdout
            finally:
                load.light.clear()
            _say(t0, out.strip())
            return out

        def overlapped(*args: str) -> str:
            """Run the swap and, while it is running (its history row says so), send a second one."""
            first = subprocess.Popen(
                [*swap_platform.cli_argv(), *args],
                env=swap_platform.env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and first.poll() is None:
                rows = swap_platform.admin("GET", "/admin/swaps", params={"limit": 1}).json()
                if rows and rows[0]["status"] == "running":
                    refused_overlap.append(swap_platform.cli("promote", "v2", check=False))
                    break
                time.sleep(0.2)
            out, err = first.communicate(timeout=2000)
            assert first.returncode == 0, err
            return out

        for version, strategy in (("v2", "in_place"), ("v3", "blue_green")):
            load.wait_for(len(load.ok) + 60)
            _say(t0, f"{load.tally()}; promoting {version}")
            out = swap("promote", version, "--reason", "test")
            assert f"promoted {version}" in out and strategy in out, out
            assert httpx.get(f"{swap_platform.url}/health").json()["checkpoint_version"] == version
            answers[version] = answer(swap_platform.url, key)
            engines[version] = swap_platform.engine_urls()
            load.wait_for(len(load.ok) + 60)
            _say(t0, f"{load.tally()}; rolling back")
            out = swap("rollback")
            assert "rolled back to base" in out and strategy in out, out
            answers[f"{version} rolled back"] = answer(swap_platform.url, key)
        load.wait_for(520)
        _say(t0, f"{load.tally()}; load stopped")
    assert not load.failures, f"{load.failures[:5]}\n{swap_platform.log_tail(80)}"
    assert len(load.ok) >= 500
    # the weights really changed, for both strategies, and really came back
    for version in ("v2", "v3"):
        assert not same_weights(answers[version], base_answer), (version, answers[version], base_answer)
        assert same_weights(answers[f"{version} rolled back"], base_answer), (version, answers, base_answer)
    assert not same_weights(answers["v2"], answers["v3"])
    # the overlapping swap was sent while the first ran, and refused without changing anything
    [second] = refused_overlap
    assert second.returncode == 1 and "another swap is running" in second.stderr, second.stderr
    seq = versions_in_dispatch_order(swap_platform, load.ok)
    assert switches(seq) == [("base", "v2"), ("v2", "base"), ("base", "v3"), ("v3", "base")]

    history = json.loads(swap_platform.cli("checkpoints", "history", "--json").stdout)
    assert [(h["kind"], h["to_version"], h["status"], h["strategy"]) for h in history[:4]] == [
        ("rollback", "base", "succeeded", "blue_green"),
        ("promote", "v3", "succeeded", "blue_green"),
        ("rollback", "base", "succeeded", "in_place"),
        ("promote", "v2", "succeeded", "in_place"),
    ]
    listed = {c["version"]: c for c in json.loads(swap_platform.cli("checkpoints", "list", "--json").stdout)}
    assert listed["base"]["status"] == "serving" and listed["v2"]["status"] == "retired"
    assert listed["v3"]["rolled_back_by"] and listed["v3"]["rolled_back_at"]
    assert json.loads((v2 / "manifest.json").read_text())["status"] == "retired"

    # in place keeps the engine; blue/green replaced it, and the engines it replaced are stopped
    assert engines["v2"] == engines["before"]
    assert engines["v3"] != engines["before"]
    after = swap_platform.engine_urls()
    assert len(after) == 1
    for url in engines["before"] + engines["v3"]:
        if url not in after:
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"{url}/health", timeout=2)


def test_broken_checkpoint_is_refused_and_serving_continues(swap_platform, base_model_dir, openai_factory):
    broken = derive_checkpoint(base_model_dir, swap_platform.root / "broken", "broken")
    weights = broken / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    swap_platform.cli("checkpoints", "add", str(broken))
    r = swap_platform.cli("promote", "broken", check=False)
    assert r.returncode == 1 and "truncated" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert httpx.get(f"{swap_platform.url}/health").json()["checkpoint_version"] == "base"
    client = openai_factory(swap_platform)
    assert client.chat.completions.create(
        model="keel", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    ).choices


def test_refusals_are_one_line_and_change_nothing(swap_platform, base_model_dir):
    failed = derive_checkpoint(
        base_model_dir,
        swap_platform.root / "gated",
        "gated",
        scale=1.02,
        manifest_extra={"eval": {"gate": {"passed": False, "decision": "x.json"}}},
    )
    swap_platform.cli("checkpoints", "add", str(failed))
    r = swap_platform.cli("promote", "gated", check=False)
    assert r.returncode == 1 and "failed its gates" in r.stderr
    r = swap_platform.cli("promote", "nope", check=False)
    assert r.returncode == 1 and "unknown version" in r.stderr
    (swap_platform.root / "incomplete").mkdir()
    r = swap_platform.cli("checkpoints", "add", str(swap_platform.root / "incomplete"), check=False)
    assert r.returncode == 1 and "not a complete checkpoint" in r.stderr
    # --force is allowed and recorded (two swaps at once: see the under-load test, which forces the overlap)
    swap_platform.cli("promote", "gated", "--force", "--reason", "hotfix")
    history = json.loads(swap_platform.cli("checkpoints", "history", "--json").stdout)
    forced = [h for h in history if h["to_version"] == "gated" and h["status"] == "succeeded"]
    assert forced and forced[0]["forced"] is True and forced[0]["reason"] == "hotfix"
    assert httpx.get(f"{swap_platform.url}/health").json()["checkpoint_version"] == "gated"
    swap_platform.cli("rollback", "--to", "base")
    assert httpx.get(f"{swap_platform.url}/health").json()["checkpoint_version"] == "base"


def test_engine_that_keeps_the_old_weights_is_refused_and_rolled_back(swap_platform, base_model_dir):
    """An engine serving other weights than the candidate's (vllm#32718: a reload that keeps the old ones)
    is caught by the probe fingerprint: the swap is refused, the old weights are put back, the history says why.

    The candidate is registered (fingerprint computed on its own, changed weights), then its folder is made
    to hold base's weights: reload_weights "succeeds" and the engine keeps answering like base."""
    stale = derive_checkpoint(base_model_dir, swap_platform.root / "stale", "stale", scale=1.04)
    swap_platform.cli("checkpoints", "add", str(stale))
    key = swap_platform.create_key("stale")
    before = answer(swap_platform.url, key)
    shutil.copyfile(base_model_dir / "model.safetensors", stale / "model.safetensors")
    r = swap_platform.cli("promote", "stale", check=False)
    assert r.returncode == 1, r.stdout
    assert "does not serve the weights of stale" in r.stderr and "still serving base" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert httpx.get(f"{swap_platform.url}/health").json()["checkpoint_version"] == "base"
    assert same_weights(answer(swap_platform.url, key), before)
    [row] = [h for h in json.loads(swap_platform.cli("checkpoints", "history", "--json").stdout)
             if h["to_version"] == "stale"]  # fmt: skip
    assert row["status"] == "failed" and "does not serve the weights of stale" in row["reason"], row


def test_killing_the_new_engine_during_warm_up_leaves_serving_unharmed(
    swap_platform, base_model_dir, openai_factory
):
    v5 = derive_checkpoint(base_model_dir, swap_platform.root / "v5", "v5", template_note="v5")
    swap_platform.cli("checkpoints", "add", str(v5))
    serving_ports = {u.rsplit(":", 1)[1] for u in swap_platform.engine_urls()}
    promote = subprocess.Popen(
        [*swap_platform.cli_argv(), "promote", "v5"],
        env=swap_platform.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
        for line in ps.splitlines():
            if "vllm.entrypoints.openai.api_server" in line and str(v5) in line:
                pid = int(line.split()[0])
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.2)
    assert killed, "the new engine never appeared"
    out, err = promote.communicate(timeout=300)
    assert promote.returncode == 1 and "still serving base" in err
    assert httpx.get(f"{swap_platform.url}/health").json()["checkpoint_version"] == "base"
    assert {u.rsplit(":", 1)[1] for u in swap_platform.engine_urls()} == serving_ports
    client = openai_factory(swap_platform)
    assert client.chat.completions.create(
        model="keel", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    ).choices
    history = json.loads(swap_platform.cli("checkpoints", "history", "--json").stdout)
    assert history[0]["to_version"] == "v5" and history[0]["status"] == "failed"


def engine_pids(model_dir_marker: str) -> list[int]:
    ps = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
    return [
        int(ln.split()[0])
        for ln in ps.splitlines()
        if "vllm.entrypoints.openai.api_server" in ln and model_dir_marker in ln
    ]


def test_crashed_engine_is_restarted(swap_platform, openai_factory):
    [url] = swap_platform.engine_urls()
    port = url.rsplit(":", 1)[1]
    [pid] = [p for p in engine_pids("--port " + port)]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 300
    healthy_again = False
    while time.monotonic() < deadline:
        body = httpx.get(f"{swap_platform.url}/health", timeout=5).json()
        engines = body["engines"]
        if (
            engines
            and engines[0]["healthy"]
            and body["status"] == "ok"
            and engine_pids("--port " + engines[0]["url"].rsplit(":", 1)[1])
        ):
            healthy_again = True
            break
        time.sleep(1)
    assert healthy_again, "the supervisor did not restart the crashed engine"
    # the killed API server's EngineCore and Worker (its process group) must not live on as orphans
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process_group_alive(pid):
        time.sleep(0.5)
    assert not process_group_alive(pid), "the crashed engine's EngineCore/Worker outlived it"
    client = openai_factory(swap_platform)
    assert client.chat.completions.create(
        model="keel", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    ).choices


def test_sigterm_mid_canary_leaves_no_engine_behind_and_the_canary_interrupted(swap_platform, base_model_dir):
    """Issue 27: the platform stops while a canary runs on its own engine. Both engines go, the canary is
    recorded as interrupted and the champion is what the next start serves (no swap happened)."""
    from keel.store import DB_FILE, aliases, canaries
    from keel.store.db import Database

    p = swap_platform
    champion = httpx.get(f"{p.url}/health", timeout=10).json()["checkpoint_version"]
    cp = derive_checkpoint(base_model_dir, p.data_dir / "canary-stop", "canary-stop", scale=0.999)
    p.cli("checkpoints", "add", str(cp))
    out = p.cli("canary", "start", "canary-stop", "--share", "0.5").stdout
    assert "running" in out, out
    ports = [u.rsplit(":", 1)[1] for u in p.engine_urls()]
    assert len(ports) == 2 and all(engine_pids("--port " + port) for port in ports)  # champion + candidate
    p.stop()
    assert p.proc.returncode == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(engine_pids("--port " + port) for port in ports):
        time.sleep(0.5)
    assert not any(engine_pids("--port " + port) for port in ports), "engine processes outlived the platform"
    db = Database(p.data_dir / DB_FILE)
    try:
        last = canaries.list_canaries(db, 1)[0]
        assert (last["version"], last["status"]) == ("canary-stop", "interrupted"), last
        assert aliases.get(db) == champion  # the champion serves on the next start
    finally:
        db.close()
