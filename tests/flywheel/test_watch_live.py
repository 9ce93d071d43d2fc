"""The watch after promotion, live: a champion that answers empty is promoted by hot swap on the session's
real `keel up` (real vLLM engine, the platform's own watch with its default settings), users keep asking and
rate what they get (thumbs down and a regeneration for an empty answer), and the watch rolls it back by
itself within its window. The history names the signals; what the gateway serves afterwards is the previous
champion's greedy output and log-probabilities, not only its label.

The candidate is the base with its final norm zeroed: every logit is 0, so greedy decoding takes token 0
(``<|endoftext|>``, a special token the detokenizer drops) to max_tokens and the answer text is empty.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.support.derive import derive_checkpoint
from tests.swap.test_hot_swap import same_weights

pytestmark = pytest.mark.slow

QUESTIONS = [
    "How do I create a table in TiDB?",
    "What does PD do in a TiDB cluster?",
    "Tell me a short joke about databases.",
    "How can I check the TiDB version?",
    "Say something nice about the number {n}.",
    "What is TiKV used for?",
]


def mute_checkpoint(base, dest, version: str):
    cp = derive_checkpoint(base, dest, version)
    weights = cp / "model.safetensors"
    tensors = load_file(weights)
    tensors["model.norm.weight"] = torch.zeros_like(tensors["model.norm.weight"])
    save_file(tensors, weights, metadata={"format": "pt"})
    return cp


def greedy(url: str, key: str, prompt: str) -> tuple[str, list[float]] | None:
    """The served weights' greedy answer to ``prompt`` through the gateway (its router included): text and
    per-token log-probabilities; None when the router answered without the engine."""
    body = {"model": "keel", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8}
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={**body, "temperature": 0, "logprobs": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=180,
    )
    r.raise_for_status()
    choice = r.json()["choices"][0]
    if not choice.get("logprobs"):
        return None
    return choice["message"]["content"], [t["logprob"] for t in choice["logprobs"]["content"]]


class Users:
    """Users asking one at a time; an empty answer gets a thumbs down and is regenerated once (the
    regeneration, empty too, gets its own thumbs down). Every HTTP outcome is kept."""

    def __init__(self, url: str, key: str):
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=180)
        self.statuses: list[int] = []
        self.answers: dict[str, str] = {}  # engine-served requests only (not the router's canned replies)
        self.stop = threading.Event()
        self.n = 0
        self.error: Exception | None = None

    def ask(self, text: str) -> tuple[str, str] | None:
        body = {"model": "keel", "messages": [{"role": "user", "content": text}], "max_tokens": 8}
        r = self.client.post("/v1/chat/completions", json={**body, "temperature": 0})
        self.statuses.append(r.status_code)
        if r.status_code != 200:
            return None
        data = r.json()
        rid, content = r.headers["x-request-id"], data["choices"][0]["message"]["content"] or ""
        if (data.get("keel") or {}).get("route") == "out_of_scope":
            return None  # a canned reply: no engine, nothing to rate
        self.answers[rid] = content
        return rid, content

    def feedback(self, body: dict) -> None:
        r = self.client.post("/v1/feedback", json=body)
        assert r.status_code < 300, r.text

    def one(self) -> None:
        self.n += 1
        q = QUESTIONS[self.n % len(QUESTIONS)].format(n=self.n)
        got = self.ask(q)
        if got is None or got[1].strip():
            return
        self.feedback({"type": "thumbs", "request_id": got[0], "rating": "down"})
        again = self.ask(q)
        if again is not None:
            self.feedback({"type": "regenerate", "request_id": got[0], "new_request_id": again[0]})
            if not again[1].strip():
                self.feedback({"type": "thumbs", "request_id": again[0], "rating": "down"})

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.one()
        except Exception as e:  # noqa: BLE001 - the test reports it
            self.error = e


def test_the_watch_rolls_back_an_empty_champion_by_itself(platform_server, api_key, base_model_dir):
    p = platform_server
    health = httpx.get(f"{p.url}/health", timeout=10).json()
    assert health["checkpoint_version"] == "base", health
    mute = mute_checkpoint(base_model_dir, p.data_dir / "mute-1", "mute-1")
    p.cli("checkpoints", "add", str(mute))
    probe = next(q for q in QUESTIONS if greedy(p.url, api_key, q) is not None)  # one the engine answers
    base_answer = greedy(p.url, api_key, probe)
    assert base_answer and base_answer[0].strip(), base_answer  # the base answers something

    users = Users(p.url, api_key)
    try:
        while len(users.answers) < 24:  # the previous champion's traffic the watch compares with (min 20)
            users.one()
            assert users.n < 200, "the router answered almost everything without the engine"
        assert not [rid for rid, a in users.answers.items() if not a.strip()]  # base never answers empty

        out = p.cli("promote", "mute-1", "--reason", "watch drill").stdout
        assert "promoted mute-1" in out, out
        promoted_at = time.monotonic()
        mute_answer = greedy(p.url, api_key, probe)
        assert mute_answer is not None and mute_answer[0] == "", mute_answer  # it serves: empty answers
        assert not same_weights(mute_answer, base_answer)

        worker = threading.Thread(target=users.run, daemon=True)
        worker.start()
        watch: dict = {}
        deadline = promoted_at + 600  # the default window is 1800 s; a check every 30 s
        while time.monotonic() < deadline:
            watch = next(
                w for w in p.admin("GET", "/admin/flywheel/watches").json() if w["version"] == "mute-1"
            )
            if watch["status"] != "running" or users.error is not None:
                break
            time.sleep(2)
        users.stop.set()
        worker.join(200)
        rolled_back_after = time.monotonic() - promoted_at
        print(f"rolled back {rolled_back_after:.0f} s after the promotion; {len(users.statuses)} requests")

        assert users.error is None, users.error
        assert watch.get("status") == "rolled_back", (watch, p.log_tail(60))
        assert watch["previous"] == "base"
        worse = {s["name"] for s in watch["verdict"]["signals"] if s["worse"]}
        assert {"error_rate", "thumbs_down_rate"} <= worse, watch["verdict"]
        err = {s["name"]: s for s in watch["verdict"]["signals"]}["error_rate"]
        assert err["new"] == 1.0 and err["n_new"] >= 20 and err["n_old"] >= 20, err
        # the history: an ordinary rollback by the watch, naming the signals
        [last] = p.admin("GET", "/admin/swaps", params={"limit": 1}).json()
        assert (last["kind"], last["status"], last["to_version"]) == ("rollback", "succeeded", "base"), last
        assert last["by_whom"] == "watch", last
        assert last["reason"].startswith("watch: mute-1 worse than base:"), last
        assert "error_rate 100.0%" in last["reason"] and "thumbs_down_rate" in last["reason"], last
        assert watch["rollback_swap"] == last["swap_id"]

        # what serves now is the previous champion's weights, through the gateway
        assert httpx.get(f"{p.url}/health", timeout=10).json()["checkpoint_version"] == "base"
        after = greedy(p.url, api_key, probe)
        assert after is not None and same_weights(after, base_answer), (after, base_answer)
        assert users.statuses and set(users.statuses) == {200}  # no request failed across both swaps
    finally:
        users.stop.set()
        if httpx.get(f"{p.url}/health", timeout=10).json().get("checkpoint_version") != "base":
            p.admin("POST", "/admin/rollback", json={"to": "base", "reason": "test cleanup"})
