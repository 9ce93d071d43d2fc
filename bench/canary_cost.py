"""What a canary costs the champion's users on this host (issue 27, item 4): champion-arm p95 latency
while a canary engine serves a share beside it, against the same load with no canary, in one run.

Run (Markdown on stdout, bench/results/canary_cost.json):
    python bench/canary_cost.py --rate 1 --phase-s 90 --share 0.2

A real `keel up` (one managed vLLM engine, router off so that only the engines share the CPU) gets an
open-loop load: `--rate` non-streamed chat requests per second, each opening a new conversation, so the
sticky split sends about `--share` of them to the candidate. Three phases of `--phase-s` seconds:
  before   the champion alone
  canary   a canary of a copy of the base (its own engine, a blue/green spare) on `--share`
  after    the canary stopped, the champion alone again
The ratio is the champion arm's p95 during the canary over the p95 of before+after pooled (bracketing the
canary phase cancels drift over the run). The arm of every request comes from its request-log row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support.derive import derive_checkpoint  # noqa: E402
from bench.support.launcher import PlatformProcess  # noqa: E402


def p95(xs: list[float]) -> float | None:
    return statistics.quantiles(xs, n=20)[-1] if len(xs) >= 20 else None


async def load(url: str, key: str, rate: float, seconds: float, max_tokens: int, tag: str) -> list[dict]:
    """Open loop: a slow answer does not slow the sender."""
    out: list[dict] = []

    async def one(c: httpx.AsyncClient, n: int) -> None:
        body = {
            "model": "keel",
            "messages": [
                {"role": "user", "content": f"Hello, I am visitor {tag}-{n}. Tell me something nice."}
            ],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        t0 = time.perf_counter()
        try:
            r = await c.post("/v1/chat/completions", json=body)
            ok = r.status_code == 200 and bool(r.json()["choices"][0]["message"]["content"] is not None)
            rid = r.headers.get("x-request-id")
        except httpx.HTTPError:
            ok, rid = False, None
        out.append({"phase": tag, "ok": ok, "ms": (time.perf_counter() - t0) * 1000, "request_id": rid})

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as c:
        tasks, t0, n = [], time.monotonic(), 0
        while time.monotonic() - t0 < seconds:
            n += 1
            tasks.append(asyncio.create_task(one(c, n)))
            await asyncio.sleep(max(0.0, t0 + n / rate - time.monotonic()))
        await asyncio.gather(*tasks)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--phase-s", type=float, default=90.0)
    ap.add_argument("--share", type=float, default=0.2)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument(
        "--model-dir", type=Path, default=Path.home() / ".cache" / "keel-test" / "checkpoints" / "base"
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "canary_cost.json")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="keel-canary-cost-") as tmp:
        root = Path(tmp)
        p = PlatformProcess(data_dir=root / "data", model_dir=a.model_dir, overrides=["router.enabled=false"])
        p.start(timeout=900)
        try:
            key = p.create_key("canary-cost")
            cand = derive_checkpoint(a.model_dir, root / "copy", "copy", scale=0.999)
            p.cli("checkpoints", "add", str(cand))
            asyncio.run(load(p.url, key, a.rate, 15, a.max_tokens, "warm"))
            samples = asyncio.run(load(p.url, key, a.rate, a.phase_s, a.max_tokens, "before"))
            t = time.monotonic()
            # a window far beyond the phase: the canary must still be running when the phase ends
            p.cli(
                "canary",
                "start",
                "copy",
                "--share",
                str(a.share),
                "--max-requests",
                "100000",
                "--window",
                "86400",
            )
            spare_start_s = time.monotonic() - t
            samples += asyncio.run(load(p.url, key, a.rate, a.phase_s, a.max_tokens, "canary"))
            p.cli("canary", "stop")
            samples += asyncio.run(load(p.url, key, a.rate, a.phase_s, a.max_tokens, "after"))
            ids = [s["request_id"] for s in samples if s["request_id"]]
            p.rows(ids[-50:], timeout=30)  # the batch writer has caught up
            arms = {}
            for k in range(0, len(ids), 100):
                params = [("id", i) for i in ids[k : k + 100]] + [("limit", "1000")]
                arms |= {
                    r["request_id"]: r.get("arm")
                    for r in p.admin("GET", "/admin/requests", params=params).json()
                }
        finally:
            p.stop()

    for s in samples:
        s["arm"] = arms.get(s["request_id"]) or "champion"
    ok = [s for s in samples if s["ok"]]
    alone = [s["ms"] for s in ok if s["phase"] in ("before", "after")]
    champ = [s["ms"] for s in ok if s["phase"] == "canary" and s["arm"] == "champion"]
    cand_ms = [s["ms"] for s in ok if s["phase"] == "canary" and s["arm"] == "candidate"]
    res = {
        "command": "python bench/canary_cost.py " + " ".join(sys.argv[1:]),
        "rate": a.rate,
        "phase_s": a.phase_s,
        "share": a.share,
        "max_tokens": a.max_tokens,
        "spare_start_s": round(spare_start_s, 1),
        "failures": sum(not s["ok"] for s in samples),
        "requests": len(samples),
        "p95_ms": {
            "alone (before+after)": p95(alone),
            "before": p95([s["ms"] for s in ok if s["phase"] == "before"]),
            "after": p95([s["ms"] for s in ok if s["phase"] == "after"]),
            "canary: champion arm": p95(champ),
            "canary: candidate arm": p95(cand_ms),
        },
        "n": {"alone": len(alone), "champion_arm": len(champ), "candidate_arm": len(cand_ms)},
    }
    base, during = res["p95_ms"]["alone (before+after)"], res["p95_ms"]["canary: champion arm"]
    res["champion_p95_ratio"] = round(during / base, 3) if base and during else None
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print("| phase | p95 ms | n |\n|---|---|---|")
    for k, v in res["p95_ms"].items():
        print(f"| {k} | {v:.0f} |  |" if v else f"| {k} | n/a |  |")
    print(
        f"\nchampion p95 ratio (canary / alone): {res['champion_p95_ratio']}; failures {res['failures']} of "
        f"{res['requests']}; spare engine start {res['spare_start_s']} s; arms {res['n']}"
    )


if __name__ == "__main__":
    main()
