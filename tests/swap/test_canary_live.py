"""The canary, live (issue 27): on the session's real `keel up`, a candidate that answers empty (the base with
its final norm zeroed) serves half of the conversations on its own vLLM engine beside the champion; the
platform's canary stops it by itself on the error rate, before 3 x min_requests of its requests, with no
request failed, every champion-arm answer whole, and no swap of the champion. Then a candidate with the
base's own weights runs a short hand-set window and is promoted at its end through the verified swap
(this module runs last on the session platform: it leaves that copy serving)."""

from __future__ import annotations

import time

import httpx
import pytest

from bench.support.derive import derive_checkpoint
from serving.engine.pool import CANDIDATE, CHAMPION, split_arm, sticky_key
from tests.flywheel.test_watch_live import greedy, mute_checkpoint
from tests.swap.test_hot_swap import same_weights

pytestmark = pytest.mark.slow

# routed to the engine (chat and domain), never a canned out-of-scope reply; the number opens a new conversation
QUESTIONS = ["Hello, I am user {n}. How are you today?", "How do I create table t{n} in TiDB?"]


def test_an_empty_answer_candidate_is_stopped_by_the_canary(platform_server, api_key, base_model_dir):
    p = platform_server
    assert httpx.get(f"{p.url}/health", timeout=10).json()["checkpoint_version"] == "base"
    mute = mute_checkpoint(base_model_dir, p.data_dir / "mute-canary", "mute-canary")
    p.cli("checkpoints", "add", str(mute))
    out = p.cli("canary", "start", "mute-canary", "--share", "0.5").stdout
    assert "mute-canary beside base on 50%" in out and "running" in out, out
    client = httpx.Client(base_url=p.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=180)
    statuses, ids = [], []
    try:
        deadline = time.monotonic() + 900
        st = p.admin("GET", "/admin/canary").json()
        n = 0
        while st["running"] and time.monotonic() < deadline:
            n += 1  # every question opens a new conversation: the split sends about half to the candidate
            body = {
                "model": "keel",
                "messages": [{"role": "user", "content": QUESTIONS[n % 2].format(n=n)}],
            }
            r = client.post("/v1/chat/completions", json={**body, "max_tokens": 8, "temperature": 0})
            statuses.append(r.status_code)
            ids.append(r.headers.get("x-request-id"))
            if n % 5 == 0:
                st = p.admin("GET", "/admin/canary").json()
        st = p.admin("GET", "/admin/canary").json()
    finally:
        if st.get("running"):
            p.admin("POST", "/admin/canary/stop")
    c = st["canary"]
    assert c["status"] == "rejected" and "error_rate" in c["reason"], c
    assert c["figures"]["n_candidate"] < 3 * 20, c["figures"]  # canary.min_requests is 20
    assert set(statuses) == {200}  # nobody got an error, on either arm
    rows = [r for r in p.rows(ids) if r.get("arm")]
    champion = [r for r in rows if r["arm"] == "champion"]
    candidate = [r for r in rows if r["arm"] == "candidate"]
    assert candidate and all(not (r["completion_text"] or "").strip() for r in candidate)
    assert champion and all(
        (r["completion_text"] or "").strip() for r in champion
    )  # no user outside its share hurt
    assert {r["checkpoint_version"] for r in candidate} == {"mute-canary"}
    # no swap: the champion still serves, the candidate is rejected and out of rotation
    assert httpx.get(f"{p.url}/health", timeout=10).json()["checkpoint_version"] == "base"
    status = {r["version"]: r["status"] for r in p.admin("GET", "/admin/checkpoints").json()}
    assert status["mute-canary"] == "rejected" and status["base"] == "serving"
    r = client.post(
        "/v1/chat/completions",
        json={
            "model": "keel",
            "messages": [{"role": "user", "content": QUESTIONS[1].format(n=7)}],
            "max_tokens": 8,
            "temperature": 0,
        },  # fmt: skip
    )
    assert r.status_code == 200 and p.rows([r.headers["x-request-id"]])[0]["arm"] == "champion"
    assert "mute-canary" in p.cli("canary", "status").stdout


def _traffic_until_decided(p, client, deadline_s: float, share: float) -> tuple[dict, list[int]]:
    """Conversations taken in turn from each arm (the test predicts the split with the pool's own sticky
    hash, and checks each row's arm against it), so the window's end does not hang on a lopsided draw: at
    share 0.5 and 15 candidate requests, about one window in seven ends with fewer than 10 champion ones
    (CI saw 15 and 4)."""
    key_id = None
    statuses, ids, predicted, n, k = [], [], [], 0, 0
    deadline = time.monotonic() + deadline_s
    st = p.admin("GET", "/admin/canary").json()
    while st["running"] and time.monotonic() < deadline:
        k += 1
        messages = [{"role": "user", "content": QUESTIONS[k % 2].format(n=k)}]
        want = (CANDIDATE, CHAMPION)[n % 2]
        if key_id is not None and split_arm(sticky_key(key_id, messages), share) != want:
            continue
        n += 1
        body = {"model": "keel", "messages": messages, "max_tokens": 8, "temperature": 0}
        r = client.post("/v1/chat/completions", json=body)
        statuses.append(r.status_code)
        ids.append(r.headers.get("x-request-id"))
        predicted.append(want if key_id is not None else None)
        if key_id is None:
            key_id = p.rows(ids[:1])[0]["key_id"]
        if n % 5 == 0:
            st = p.admin("GET", "/admin/canary").json()
    arms = {r["request_id"]: r.get("arm") for r in p.rows(ids)}
    got = [(arms[i], want) for i, want in zip(ids, predicted, strict=True) if want is not None]
    # as predicted until the decision; every request after it (before the next poll) is the champion's
    first_off = next((j for j, (arm, want) in enumerate(got) if arm != want), len(got))
    assert first_off >= 2 * 10 and all(arm == CHAMPION for arm, _ in got[first_off:]), got
    return p.admin("GET", "/admin/canary").json(), statuses


def test_an_identical_candidate_is_promoted_at_the_end_of_its_window(
    platform_server, api_key, base_model_dir
):
    p = platform_server
    probe = "Hello there! How is your day going?"  # routed to chat: the engine answers it
    before = greedy(p.url, api_key, probe)
    assert before is not None
    same = derive_checkpoint(base_model_dir, p.data_dir / "same-canary", "same-canary")  # base's weights
    p.cli("checkpoints", "add", str(same))
    window = {"min_requests": 10, "max_requests": 15, "max_window_s": 600, "check_every_s": 2}
    # the answer waits for the candidate's engine: its first start on a fresh machine took over a minute
    body = {"version": "same-canary", "share": 0.5, **window}
    st = p.admin("POST", "/admin/canary", json=body, timeout=600).json()
    assert st["status"] == "running", st
    client = httpx.Client(base_url=p.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=180)
    try:
        st, statuses = _traffic_until_decided(p, client, 900, share=0.5)
    finally:
        if st.get("running"):
            p.admin("POST", "/admin/canary/stop")
    c = st["canary"]
    assert c["status"] == "promoted", c  # not stopped: no guarded signal is worse
    assert c["figures"]["n_candidate"] >= 15 and c["figures"]["outcome"] == "promote", c["figures"]
    assert set(statuses) == {200}
    # the normal verified swap follows; what serves afterwards answers as the base did
    deadline = time.monotonic() + 600
    while httpx.get(f"{p.url}/health", timeout=10).json()["checkpoint_version"] != "same-canary":
        assert time.monotonic() < deadline, p.admin("GET", "/admin/swaps").json()[:1]
        time.sleep(2)
    after = greedy(p.url, api_key, probe)
    assert after is not None and same_weights(after, before)
    swaps = p.admin("GET", "/admin/swaps").json()
    assert (swaps[0]["kind"], swaps[0]["status"], swaps[0]["to_version"]) == (
        "promote",
        "succeeded",
        "same-canary",
    ), swaps[0]
