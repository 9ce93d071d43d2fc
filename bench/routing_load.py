"""Routing under load: a short message's latency while other users send long ones (issue 16, finding A).

Run (results as Markdown on stdout and in bench/results/routing_load.json):
    nice -n 5 python bench/routing_load.py --level router --seconds 20 --rounds 2
    nice -n 5 python bench/routing_load.py --level gateway --seconds 20 --rounds 2

Phases: no long messages ("none"), then long messages of 12k, 100k and 1M characters, interleaved round by
round so each ratio compares like with like on this machine. In every phase one user sends short messages
at a fixed rate (open loop: a slow answer does not slow the sender) and, in the long phases, `--long-users`
users send long messages back to back. Reported: short p50/p95 per phase and p95 against "none"
(goal ≤ 1.5×), and what became of the long messages (routed, fallback, status).

--level router: the real router through the gateway's hook in this process (real E5 embedder and intents,
no index, no engine): routing alone. --level gateway: a real `keel up` (router on, real vLLM); a short
request is a whole chat completion (8 tokens), a long one goes through routing and then to the engine,
which refuses it past its context (an intended 400).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PARAGRAPH = (
    "We run TiDB 7.5 on three regions and after the upgrade the PD leader moved twice an hour; the logs show "
    "heartbeat timeouts on the TiKV stores in the far region and the placement rules look fine to us. "
)
SIZES = {"12k": 12_000, "100k": 100_000, "1M": 1_000_000}


def long_text(chars: int, n: int) -> str:
    body = (f"[paste {n}] " + PARAGRAPH * (chars // len(PARAGRAPH) + 1))[: chars - 40]
    return body + f" What should we check first? ({n})"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


@dataclass
class Phase:
    name: str
    short_ms: list[float] = field(default_factory=list)
    short_failed: int = 0
    long_ms: list[float] = field(default_factory=list)
    long_outcomes: dict[str, int] = field(default_factory=dict)

    def note(self, outcome: str) -> None:
        self.long_outcomes[outcome] = self.long_outcomes.get(outcome, 0) + 1


class RouterTarget:
    """The router through the gateway's hook, in this process."""

    def __init__(self) -> None:
        from serving.router.config import RouterConfig
        from serving.router.hook import gateway_router
        from serving.router.service import build_router

        self.router = build_router(RouterConfig())
        self.hook = gateway_router(self.router)

    async def short(self, n: int) -> None:
        await self.hook([{"role": "user", "content": f"Hi there, it's user {n}"}])

    async def long(self, text: str) -> str:
        d = await self.hook([{"role": "user", "content": text}])
        return (
            "fallback: " + (d.info.fallback_reason or "").split(" (")[0]
            if d.info.fallback and d.route == "direct"
            else f"routed {d.route}"
        )

    async def close(self) -> None:
        self.router.pool.shutdown()


class GatewayTarget:
    """A real platform (router on) and its engine."""

    def __init__(self, work: Path, index_from: Path | None = None, questions: Path | None = None) -> None:
        from keel.checkpoints.basemodel import ensure_base

        from bench.support.launcher import PlatformProcess, copy_index

        model_dir = ensure_base(Path.home() / ".cache" / "keel-test" / "checkpoints", None)
        overrides = ["router.enabled=true"]
        if index_from:
            overrides += copy_index(index_from, work / "data")
        self.p = PlatformProcess(data_dir=work / "data", model_dir=model_dir, overrides=overrides)
        self.p.start()
        if index_from:
            self.p.wait_dense()
        self.questions = (
            [json.loads(x)["question"] for x in questions.read_text().splitlines() if x.strip()]
            if questions
            else None
        )
        if self.questions:
            random.Random(16).shuffle(self.questions)
        self.ids: list[str] = []  # every request's id: each must have its request-log row
        self.routes: dict[str, list[float]] = {}
        self.key = self.p.create_key("bench-routing")
        self.client = httpx.AsyncClient(
            base_url=self.p.url, timeout=600, headers={"Authorization": f"Bearer {self.key}"}
        )

    async def _post(self, content: str, max_tokens: int) -> httpx.Response:
        body = {
            "model": "keel",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        return await self.client.post("/v1/chat/completions", json=body)

    async def short(self, n: int) -> None:
        content = self.questions[n % len(self.questions)] if self.questions else f"Hi there, it's user {n}"
        t = time.perf_counter()
        r = await self._post(content, 8)
        if rid := r.headers.get("x-request-id"):
            self.ids.append(rid)
        r.raise_for_status()
        route = (r.json().get("keel") or {}).get("route") or "none"
        self.routes.setdefault(route, []).append((time.perf_counter() - t) * 1000)

    async def long(self, text: str) -> str:
        r = await self._post(text, 8)
        if rid := r.headers.get("x-request-id"):
            self.ids.append(rid)
        route = (r.json().get("keel") or {}).get("route") if r.status_code == 200 else None
        return f"{r.status_code}" + (f" {route}" if route else "")

    def rows_found(self) -> dict:
        found = set()
        for k in range(0, len(self.ids), 100):
            found |= {row["request_id"] for row in self.p.rows(self.ids[k : k + 100], timeout=30)}
        return {"requests": len(self.ids), "rows": len(found), "missing": len(set(self.ids) - found)}

    async def close(self) -> None:
        await self.client.aclose()
        self.p.stop()


async def run_phase(
    target, name: str, seconds: float, interval: float, long_users: int, seq: list[int]
) -> Phase:
    ph = Phase(name)
    stop = asyncio.Event()

    async def short_one(n: int) -> None:
        t = time.perf_counter()
        try:
            await target.short(n)
            ph.short_ms.append((time.perf_counter() - t) * 1000)
        except Exception:
            ph.short_failed += 1

    async def long_user() -> None:
        while not stop.is_set():
            seq[0] += 1
            t = time.perf_counter()
            try:
                outcome = await target.long(long_text(SIZES[name], seq[0]))
            except Exception as e:
                outcome = f"error {type(e).__name__}"
            ph.long_ms.append((time.perf_counter() - t) * 1000)
            ph.note(outcome)

    longs = [asyncio.create_task(long_user()) for _ in range(long_users if name != "none" else 0)]
    await asyncio.sleep(0.5 if longs else 0)  # the long messages are in by now
    shorts = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        seq[0] += 1
        shorts.append(asyncio.create_task(short_one(seq[0])))
        await asyncio.sleep(interval)
    await asyncio.gather(*shorts)
    stop.set()
    await asyncio.gather(*longs)
    return ph


async def main_async(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="keel-bench-routing-"))
    target = (
        RouterTarget()
        if args.level == "router"
        else GatewayTarget(work, args.index_from, args.questions if args.index_from else None)
    )
    seq = [0]
    phases: dict[str, Phase] = {}
    try:
        for _ in range(3):  # warm
            await target.short(-1 - _)
        for r in range(args.rounds):
            for name in ["none", *args.sizes]:
                ph = await run_phase(target, name, args.seconds, args.interval, args.long_users, seq)
                agg = phases.setdefault(name, Phase(name))
                agg.short_ms += ph.short_ms
                agg.short_failed += ph.short_failed
                agg.long_ms += ph.long_ms
                for k, v in ph.long_outcomes.items():
                    agg.long_outcomes[k] = agg.long_outcomes.get(k, 0) + v
                print(
                    f"  round {r} {name:5s} short n={len(ph.short_ms)} p50 {pct(ph.short_ms, 0.5):7.1f} ms "
                    f"p95 {pct(ph.short_ms, 0.95):7.1f} ms; long {len(ph.long_ms)} {ph.long_outcomes}",
                    flush=True,
                )
        extra = {}
        if isinstance(target, GatewayTarget):
            extra["rows"] = target.rows_found()
            extra["short_by_route"] = {
                k: {"n": len(v), "p50_ms": pct(v, 0.5), "p95_ms": pct(v, 0.95)}
                for k, v in target.routes.items()
            }
            print(json.dumps(extra), flush=True)
    finally:
        await target.close()
    base = pct(phases["none"].short_ms, 0.95)
    lines = [
        "| long messages | short n | short p50 ms | short p95 ms | p95 vs none | long n | long p50 s | long outcomes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    out = {}
    for name, ph in phases.items():
        p95 = pct(ph.short_ms, 0.95)
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(ph.long_outcomes.items())) or "–"
        long_p50 = f"{statistics.median(ph.long_ms) / 1000:.2f}" if ph.long_ms else "–"
        lines.append(
            f"| {name} | {len(ph.short_ms)} (failed {ph.short_failed}) | {pct(ph.short_ms, 0.5):.1f} | {p95:.1f} "
            f"| {p95 / base:.2f}× | {len(ph.long_ms)} | {long_p50} | {outcomes} |"
        )
        out[name] = {
            "short_n": len(ph.short_ms),
            "short_failed": ph.short_failed,
            "short_p50_ms": pct(ph.short_ms, 0.5),
            "short_p95_ms": p95,
            "p95_ratio": p95 / base,
            "long_n": len(ph.long_ms),
            "long_outcomes": ph.long_outcomes,
        }
    table = "\n".join(lines)
    print(table)
    return {"args": vars(args), "phases": out, "table": table, **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--level", choices=["router", "gateway"], default="router")
    ap.add_argument("--seconds", type=float, default=20.0, help="short-message sending time per phase")
    ap.add_argument("--interval", type=float, default=0.25, help="seconds between short messages")
    ap.add_argument("--long-users", type=int, default=2, help="users sending long messages back to back")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument(
        "--index-from",
        type=Path,
        default=None,
        help="gateway: serve this complete rag folder (a platform's <data_dir>/rag built from the demo corpus); "
        "the short messages are then keel simulate's questions (zh/en, domain, chat, out of scope).",
    )
    ap.add_argument(
        "--questions", type=Path, default=REPO / "platform" / "keel" / "simulate" / "questions.jsonl"
    )
    args = ap.parse_args()
    result = asyncio.run(main_async(args))
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = f"routing_load_{args.level}{'_indexed' if args.index_from else ''}.json"
    (out / name).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
