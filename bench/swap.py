"""Hot-swap benchmark: swap and rollback duration, failed requests, p95 latency during swaps vs steady state.

Run (prints a Markdown table and saves bench/results/swap.json):
    python bench/swap.py --workers 12 --steady-s 30
    python bench/swap.py --workers 12 --steady-s 30 --replicas 2 --in-place-only   # rolling across replicas

A steady mixed load (half streaming, half not, 6 tokens each) runs through the gateway the whole time;
the checkpoint is promoted in place (same architecture), rolled back, promoted blue/green (changed chat
template, so a second engine starts) and rolled back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from keel.simulate.probe import chat_body, whole_answer  # noqa: E402

from bench.support.derive import derive_checkpoint  # noqa: E402
from bench.support.launcher import PlatformProcess  # noqa: E402


class TimedLoad:
    def __init__(self, url: str, key: str, workers: int):
        self.url, self.key, self.workers = url, key, workers
        self.samples: list[tuple[float, float, bool]] = []  # (start, end, ok) in epoch seconds
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]

    def _run(self, i: int) -> None:
        n = 0
        with httpx.Client(timeout=300, headers={"Authorization": f"Bearer {self.key}"}) as c:
            while not self._stop.is_set():
                n += 1
                stream = (i + n) % 2 == 0
                body = chat_body(f"Tell me about {n}.", 6, stream)
                t0 = time.time()
                try:
                    ok = whole_answer(c.post(f"{self.url}/v1/chat/completions", json=body), stream)
                except httpx.HTTPError:
                    ok = False
                self.samples.append((t0, time.time(), ok))

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(300)


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.95 * len(xs)))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--steady-s", type=float, default=30.0)
    ap.add_argument("--replicas", type=int, default=1, help="managed engines per version (rolling in place)")
    ap.add_argument("--in-place-only", action="store_true", help="skip the blue/green promote + rollback")
    args = ap.parse_args()

    from keel.checkpoints.basemodel import ensure_base

    base = ensure_base(Path.home() / ".cache" / "keel-test" / "checkpoints", None)
    work = Path(tempfile.mkdtemp(prefix="keel-swap-bench-"))
    v2 = derive_checkpoint(base, work / "v2", "v2", scale=1.05)
    v3 = derive_checkpoint(base, work / "v3", "v3", template_note="bench")
    overrides = ["router.enabled=false", f"engine.replicas={args.replicas}"]
    if args.replicas > 1:
        overrides.append("engine.kvcache_gib=1")
    p = PlatformProcess(data_dir=work / "data", model_dir=base, overrides=overrides).start(timeout=900)
    try:
        for cp in (v2, v3):
            p.cli("checkpoints", "add", str(cp))
        load = TimedLoad(p.url, p.create_key("bench"), args.workers)
        load.start()
        time.sleep(5)  # warm
        steady = (time.time(), time.time() + args.steady_s)
        time.sleep(args.steady_s)
        swaps = [["promote", "v2"], ["rollback"]]
        if not args.in_place_only:
            swaps += [["promote", "v3"], ["rollback"]]
        for cmd in swaps:
            p.cli(*cmd)
            time.sleep(3)
        load.stop()
        history = json.loads(p.cli("checkpoints", "history", "--json").stdout)[::-1]
    finally:
        p.stop()

    def window(lo: float, hi: float) -> list[tuple[float, float, bool]]:
        return [s for s in load.samples if s[0] < hi and s[1] > lo]

    steady_lat = [e - s for s, e, ok in window(*steady) if ok]
    rows = [
        "| swap | strategy | seconds | requests overlapping | failed | p95 latency s | p95 / steady p95 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    results = []
    for h in history:
        lo = datetime.fromisoformat(h["started_at"]).timestamp()
        hi = datetime.fromisoformat(h["finished_at"]).timestamp()
        w = window(lo, hi)
        lat = [e - s for s, e, ok in w if ok]
        failed = sum(1 for *_, ok in w if not ok)
        ratio = p95(lat) / p95(steady_lat)
        rows.append(
            f"| {h['kind']} → {h['to_version']} | {h['strategy']} | {h['seconds']:.2f} | {len(w)} | {failed} | {p95(lat):.2f} | {ratio:.2f} |"
        )
        results.append({**h, "overlapping": len(w), "failed": failed, "p95": p95(lat), "ratio": ratio})
    total = len(load.samples)
    failed_total = sum(1 for *_, ok in load.samples if not ok)
    rows.append("")
    rows.append(
        f"steady state: {len(steady_lat)} requests, p50 {statistics.median(steady_lat):.2f} s, p95 {p95(steady_lat):.2f} s; "
        f"whole run: {total} requests, {failed_total} failed"
    )
    table = "\n".join(rows)
    print(table)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "swap.json" if args.replicas == 1 else f"swap-replicas{args.replicas}.json"
    (out / name).write_text(
        json.dumps(
            {"args": vars(args), "swaps": results, "total": total, "failed": failed_total, "table": table},
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
