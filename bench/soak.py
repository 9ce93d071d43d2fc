"""Soak: mixed traffic for a long time, with two swaps and a rollback in the middle (issue 16, build 6).

Run (Markdown on stdout, bench/results/soak.json):
    nice -n 5 python bench/soak.py --minutes 30 --rate 2
    nice -n 5 python bench/soak.py --minutes 5 --rate 2          # the short proof run

A real `keel up` (router on, real vLLM) gets requests at a fixed rate (open loop: a slow answer does not
slow the sender), in a fixed rotation of kinds. With `--index-from DATA_DIR/rag` (a complete index of the
demo corpus, e.g. kept by `bench/time_to_dense.py --keep DATA_DIR`) the platform serves that index
(lexical + dense) and the chat messages are `keel simulate`'s question bank (zh/en; domain, chat and
out-of-scope questions, in a seeded order): routed traffic as users send it. Without it, no document
index and one-line topic prompts (the runs before issue 28).

    nice -n 5 python bench/soak.py --minutes 15 --rate 1 --index-from /var/tmp/keel-dense-idle/rag

Kinds:
  plain     non-streamed chat, 8 tokens                  → 200 with a choice
  stream    streamed chat, 8 tokens                      → 200 ending in [DONE], no error event
  aborted   streamed chat (256 tokens), closed after the first chunk → its row says 499
  bad       invalid JSON, 16 stop sequences, unknown model, unknown path, wrong method → that 4xx exactly
  feedback  thumbs on an earlier answer (/v1/feedback)   → 200
At 1/4, 2/4 and 3/4 of the run: promote v2 (in place), promote v3 (in place), roll back (to v2), each a
checkpoint with perturbed weights of the base. Recorded: requests and failures per kind (a failure is
any outcome other than the expected one: intended 4xx are not failures), request-log rows vs chat
requests sent (counted by id), the platform process's RSS over the run (growth from the first sample
after warm-up to the last), and p50/p95 latency per phase and kind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support.derive import derive_checkpoint  # noqa: E402
from bench.support.launcher import PlatformProcess, copy_index  # noqa: E402

QUESTIONS = REPO / "platform" / "keel" / "simulate" / "questions.jsonl"

KINDS = ["plain", "stream", "plain", "aborted", "stream", "bad", "feedback", "plain"]
BAD = [  # (method, path, raw body, expected status)
    ("POST", "/v1/chat/completions", b"{not json", 400),
    (
        "POST",
        "/v1/chat/completions",
        json.dumps(
            {
                "model": "keel",
                "messages": [{"role": "user", "content": "hi"}],
                "stop": [str(i) for i in range(16)],
            }
        ).encode(),
        400,
    ),
    (
        "POST",
        "/v1/chat/completions",
        b'{"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}',
        404,
    ),
    ("POST", "/v1/completions", b"{}", 404),
    ("GET", "/v1/chat/completions", b"", 405),
]
TOPICS = ["TiDB", "the sea", "clean code", "bicycles", "consensus", "spring", "indexes", "rain"]


@dataclass
class Sample:
    kind: str
    phase: str
    start: float
    seconds: float
    ok: bool
    status: int | None
    request_id: str | None
    detail: str = ""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def question_bank(path: Path, seed: int = 16) -> list[str]:
    """keel simulate's questions (every split), shuffled once: the mix users send."""
    qs = [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(qs)
    return qs


class Soak:
    def __init__(self, p: PlatformProcess, key: str, questions: list[str] | None = None):
        self.p = p
        self.questions = questions
        self.client = httpx.AsyncClient(
            base_url=p.url,
            timeout=300,
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=64),
        )
        self.samples: list[Sample] = []
        self.answered: list[str] = []  # request ids feedback can refer to
        self.chat_ids: list[str] = []  # every chat request's id (rows expected)
        self.chat_sent = 0
        self.phase = "warm-up"
        self.n = 0

    def body(self, stream: bool, max_tokens: int = 8) -> dict:
        self.n += 1
        if self.questions:
            content = self.questions[self.n % len(self.questions)]
        else:
            content = f"Tell me one thing about {TOPICS[self.n % len(TOPICS)]} ({self.n})."
        return {
            "model": "keel",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "ignore_eos": max_tokens > 8,  # an aborted stream must still be generating when its client leaves
            "temperature": 0,
            "stream": stream,
        }

    async def one(self, kind: str) -> None:
        phase, t0 = self.phase, time.time()
        status = rid = None
        ok, detail = False, ""
        try:
            if kind == "plain":
                self.chat_sent += 1
                r = await self.client.post("/v1/chat/completions", json=self.body(False))
                status, rid = r.status_code, r.headers.get("x-request-id")
                ok = status == 200 and bool(r.json().get("choices"))
                if ok:
                    self.answered.append(rid)
            elif kind in ("stream", "aborted"):
                self.chat_sent += 1
                body = self.body(True, 8 if kind == "stream" else 256)
                async with self.client.stream("POST", "/v1/chat/completions", json=body) as r:
                    status, rid = r.status_code, r.headers.get("x-request-id")
                    text = ""
                    async for chunk in r.aiter_text():
                        text += chunk
                        if kind == "aborted" and "data: {" in text:
                            break  # leave mid-stream: the row must say 499
                    ok = status == 200 and (
                        "data: {" in text
                        if kind == "aborted"
                        else text.rstrip().endswith("[DONE]") and '"error"' not in text
                    )
                if ok and kind == "stream":
                    self.answered.append(rid)
            elif kind == "bad":
                method, path, raw, expected = BAD[self.n % len(BAD)]
                self.n += 1
                self.chat_sent += 1  # a refusal under /v1 is a request too: it gets a row
                r = await self.client.request(
                    method, path, content=raw or None, headers={"Content-Type": "application/json"}
                )
                status, rid = r.status_code, r.headers.get("x-request-id")
                ok = status == expected and "error" in r.json() and rid is not None
                detail = f"{method} {path} → {status} (expected {expected})"
            elif kind == "feedback":
                target = self.answered[-1] if self.answered else None
                if target is None:
                    return
                fb = {"request_id": target, "type": "thumbs", "rating": "up" if self.n % 2 else "down"}
                r = await self.client.post("/v1/feedback", json=fb)
                status = r.status_code
                ok = status in (200, 201) and r.json().get("object") == "feedback"
        except Exception as e:  # a failure to record, never a crash of the soak
            detail = f"{type(e).__name__}: {e}"
        if rid and kind != "feedback":
            self.chat_ids.append(rid)
        self.samples.append(Sample(kind, phase, t0, time.time() - t0, ok, status, rid, detail))

    async def traffic(self, seconds: float, rate: float) -> None:
        tasks, i = [], 0
        t_end = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < t_end:
            tasks.append(asyncio.create_task(self.one(KINDS[i % len(KINDS)])))
            i += 1
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if len(tasks) > 512:
                tasks = [t for t in tasks if not t.done()]
        await asyncio.gather(*tasks)


async def run(args, p: PlatformProcess, key: str) -> dict:
    soak = Soak(p, key, question_bank(args.questions) if args.index_from else None)
    pid = p.proc.pid
    rss: list[tuple[float, int]] = []
    swaps: list[dict] = []
    total = args.minutes * 60
    plan = [
        (total * f, cmd)
        for f, cmd in ((0.25, ["promote", "v2"]), (0.5, ["promote", "v3"]), (0.75, ["rollback"]))
    ]

    async def sampler(stop: asyncio.Event) -> None:
        while not stop.is_set():
            rss.append((time.time(), rss_kib(pid)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)

    async def swapper(t_start: float) -> None:
        for at, cmd in plan:
            await asyncio.sleep(max(0.0, t_start + at - time.monotonic()))
            soak.phase = " ".join(cmd)
            t = time.time()
            proc = await asyncio.to_thread(p.cli, *cmd, check=False)
            swaps.append(
                {
                    "cmd": " ".join(cmd),
                    "rc": proc.returncode,
                    "seconds": round(time.time() - t, 2),
                    "at_s": round(at),
                }
            )
            soak.phase = f"after {' '.join(cmd)}"

    # warm-up: the first requests pay one-off costs (imports, caches) that are not growth
    await soak.traffic(args.warmup_s, args.rate)
    await asyncio.sleep(2)
    rows_before = p.admin("GET", "/admin/requests/count").json()["count"]
    sent_before = soak.chat_sent
    warm_ids = set(soak.chat_ids)
    soak.phase = "steady"
    stop = asyncio.Event()
    sampler_task = asyncio.create_task(sampler(stop))
    t_start = time.monotonic()
    await asyncio.gather(soak.traffic(total, args.rate), swapper(t_start))
    stop.set()
    await sampler_task
    await soak.client.aclose()
    await asyncio.sleep(3)  # the batch writer commits within its flush interval
    rows_after = p.admin("GET", "/admin/requests/count").json()["count"]

    ids = [i for i in soak.chat_ids if i not in warm_ids]
    found: dict[str, dict] = {}
    for k in range(0, len(ids), 100):
        batch = ids[k : k + 100]
        for row in p.rows(batch, timeout=15):
            found[row["request_id"]] = row
    missing = [i for i in ids if i not in found]
    raw = {
        "samples": [vars(x) for x in soak.samples],
        "statuses": {k: v["status_code"] for k, v in found.items()},
    }
    (Path(tempfile.gettempdir()) / "keel-soak-raw.json").write_text(
        json.dumps({"rss": rss, "swaps": swaps, **raw})
    )
    measured = [s for s in soak.samples if s.phase != "warm-up"]
    aborted_rows = [
        found[s.request_id]["status_code"] for s in measured if s.kind == "aborted" and s.request_id in found
    ]
    for s in measured:  # the server side of a failure too: an aborted stream's row must say 499
        row = found.get(s.request_id) if s.kind == "aborted" and s.ok else None
        # an out-of-scope refusal is one canned chunk, all sent before the client can leave: 200 is right
        canned = row is not None and row["route"] == "out_of_scope" and row["status_code"] == 200
        if row is not None and row["status_code"] != 499 and not canned:
            s.ok, s.detail = False, f"row says {row['status_code']}, not 499"

    by_kind: dict[str, list[Sample]] = defaultdict(list)
    by_phase: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in measured:
        by_kind[s.kind].append(s)
        if s.ok and s.kind in ("plain", "stream"):
            by_phase[(s.phase, s.kind)].append(s.seconds)
    failures = [s for s in measured if not s.ok]
    rss_first, rss_last = rss[0][1], rss[-1][1]
    rss_max = max(v for _, v in rss)

    lines = [
        f"run: {args.minutes:g} min at {args.rate:g} requests/s after {args.warmup_s:g} s warm-up; "
        f"{len(measured)} requests, {len(failures)} failures",
        "",
        "| kind | requests | failures | p50 s | p95 s |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in ("plain", "stream", "aborted", "bad", "feedback"):
        ss = by_kind.get(kind, [])
        lat = [s.seconds for s in ss if s.ok]
        lines.append(
            f"| {kind} | {len(ss)} | {sum(1 for s in ss if not s.ok)} | {pct(lat, 0.5):.2f} | {pct(lat, 0.95):.2f} |"
        )
    lines += ["", "| phase | plain n | plain p95 s | stream n | stream p95 s |", "|---|---:|---:|---:|---:|"]
    for phase in dict.fromkeys(s.phase for s in measured):
        pl, st = by_phase.get((phase, "plain"), []), by_phase.get((phase, "stream"), [])
        lines.append(f"| {phase} | {len(pl)} | {pct(pl, 0.95):.2f} | {len(st)} | {pct(st, 0.95):.2f} |")
    # per route (from each request's row): what routing did to latency, and how much reached the engine
    by_route: dict[tuple[str, str], list[float]] = defaultdict(list)
    routes: Counter = Counter()
    for s in measured:
        row = found.get(s.request_id) if s.request_id else None
        if row is None or s.kind not in ("plain", "stream"):
            continue
        routes[row["route"] or "none"] += 1
        if s.ok:
            by_route[(row["route"] or "none", s.kind)].append(s.seconds)
    lines += ["", "| route | requests | plain p50 s | plain p95 s | stream p50 s | stream p95 s |"]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for route, n in sorted(routes.items()):
        pl, st = by_route.get((route, "plain"), []), by_route.get((route, "stream"), [])
        lines.append(
            f"| {route} | {n} | {pct(pl, 0.5):.2f} | {pct(pl, 0.95):.2f} | {pct(st, 0.5):.2f} | {pct(st, 0.95):.2f} |"
        )
    engine_share = sum(n for r, n in routes.items() if r != "out_of_scope") / max(1, sum(routes.values()))
    lexical_only = sum(1 for row in found.values() if row.get("lexical_only"))
    lines += [
        "",
        f"answered by the engine (plain + stream, route not out_of_scope): {engine_share:.0%}; "
        f"rows with lexical-only retrieval: {lexical_only}",
        "swaps: " + "; ".join(f"{s['cmd']} at {s['at_s']} s: rc {s['rc']}, {s['seconds']} s" for s in swaps),
        f"request-log rows: {rows_after - rows_before} new rows for {soak.chat_sent - sent_before} chat/v1 requests sent; "
        f"by id: {len(ids) - len(missing)} of {len(ids)} found, {len(missing)} missing; "
        f"aborted streams logged 499: {sum(1 for c in aborted_rows if c == 499)} of {len(aborted_rows)} "
        f"(statuses {dict(sorted(Counter(aborted_rows).items()))})",
        f"platform RSS: {rss_first / 1024:.0f} MiB after warm-up → {rss_last / 1024:.0f} MiB at the end "
        f"({(rss_last - rss_first) / rss_first * 100:+.1f}%), max {rss_max / 1024:.0f} MiB, {len(rss)} samples",
    ]
    if failures:
        lines.append(
            "failures: "
            + "; ".join(f"{s.kind}@{s.phase}: {s.status} {s.detail}"[:160] for s in failures[:10])
        )
    table = "\n".join(lines)
    return {
        "args": vars(args),
        "requests": len(measured),
        "failures": len(failures),
        "rows_new": rows_after - rows_before,
        "sent": soak.chat_sent - sent_before,
        "ids": len(ids),
        "missing": len(missing),
        "aborted_rows_499": sum(1 for c in aborted_rows if c == 499),
        "aborted_rows": len(aborted_rows),
        "rss_kib": rss,
        "rss_growth": (rss_last - rss_first) / rss_first,
        "swaps": swaps,
        "routes": dict(routes),
        "engine_share": engine_share,
        "lexical_only_rows": lexical_only,
        "table": table,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=2.0, help="requests per second (all kinds together)")
    ap.add_argument("--warmup-s", type=float, default=30.0)
    ap.add_argument(
        "--index-from",
        type=Path,
        default=None,
        help="A complete rag folder (<data_dir>/rag of a platform that indexed the demo corpus) to serve.",
    )
    ap.add_argument("--questions", type=Path, default=QUESTIONS, help="Chat messages (with --index-from).")
    args = ap.parse_args()

    from keel.checkpoints.basemodel import ensure_base

    base = ensure_base(Path.home() / ".cache" / "keel-test" / "checkpoints", None)
    work = Path(tempfile.mkdtemp(prefix="keel-soak-"))
    v2 = derive_checkpoint(base, work / "v2", "v2", scale=1.05)
    v3 = derive_checkpoint(base, work / "v3", "v3", scale=0.97)
    overrides = ["router.enabled=true"]
    if args.index_from:
        overrides += copy_index(args.index_from, work / "data")
    p = PlatformProcess(data_dir=work / "data", model_dir=base, overrides=overrides).start(timeout=900)
    if args.index_from:
        p.wait_dense()
    try:
        for cp in (v2, v3):
            p.cli("checkpoints", "add", str(cp))
        key = p.create_key("soak")
        result = asyncio.run(run(args, p, key))
    finally:
        p.stop()
    print(result["table"])
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "soak.json" if args.minutes >= 30 else f"soak-{args.minutes:g}min.json"
    (out / name).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
