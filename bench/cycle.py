"""Learning-outcome benchmark: one flywheel cycle, its wall time per step, and what it did to the model.

Run (after `keel up` and `keel simulate`, or with no platform: the cycle then runs in this CLI):
    python bench/cycle.py --profile demo
    python bench/cycle.py --profile overtrained --stages cpt        # must be rejected by the gates

It runs `keel cycle run --profile P --json` (the same code path as the API and the scheduler), then reads
the two eval JSONs the cycle's evaluate step wrote (the serving checkpoint vs the candidate, same items)
and prints per step the wall time, and before → after: domain bits/byte (held-out FAQ answers), general
bits/byte per language (en, zh), MMLU/CMMLU accuracy, and the gate decision with its reasons.
JSON saved to bench/results/cycle-<profile>.json, with the machine's load before and after.

Serving during the cycle (issue 14, item 7): with `--probe-every S --key K` (a user key of the running
platform), a probe thread sends one short request every S seconds through the gateway, alternating small
talk (direct route) and a domain question (RAG route), 32 tokens, greedy: first for `--idle-s` seconds
with no cycle running, then for the whole cycle. Latencies are reported idle vs during the cycle and per
step (a probe belongs to the step that was running when it was sent).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def _bpb(ev: dict, part: str, sub: str | None = None) -> float | None:
    p = ev.get(part)
    if not p:
        return None
    s = p["parts"].get(sub) if sub else p["summary"]
    return s.get("bpb") if s else None


def _acc(ev: dict, bench: str) -> float | None:
    b = ev.get(bench)
    return b["summary"]["overall"]["acc"] if b else None


def outcome(cycle: dict) -> dict:
    steps = {s["name"]: s for s in cycle["steps"]}
    ev = steps.get("evaluate", {}).get("output", {})
    out: dict = {"metrics": {}}
    if "baseline" in ev and "candidate" in ev:
        base = json.loads(Path(ev["baseline"]["eval"]).read_text())
        cand = json.loads(Path(ev["candidate"]["eval"]).read_text())
        for name, fn in (
            ("domain_bpb", lambda e: _bpb(e, "domain")),
            ("general_en_bpb", lambda e: _bpb(e, "general", "en")),
            ("general_zh_bpb", lambda e: _bpb(e, "general", "zh")),
            ("general_bpb", lambda e: _bpb(e, "general")),
            ("mmlu_acc", lambda e: _acc(e, "mmlu")),
            ("cmmlu_acc", lambda e: _acc(e, "cmmlu")),
        ):
            b, c = fn(base), fn(cand)
            rel = (c / b - 1) * 100 if b and c is not None else None
            out["metrics"][name] = {"before": b, "after": c, "change_pct": rel}
    gate = steps.get("gate", {}).get("output", {})
    out["gate"] = {
        "passed": gate.get("passed"),
        "reasons": gate.get("reasons", []),
        "gates": gate.get("gates", []),
    }
    out["steps"] = [
        {"name": s["name"], "status": s["status"], "seconds": s["seconds"], "reason": s.get("reason")}
        for s in cycle["steps"]
    ]
    out["decision"] = (steps.get("promote", {}).get("output") or {}).get("decision")
    return out


def markdown(res: dict) -> str:
    lines = [f"cycle {res['cycle_id']}: {res['status']} ({res['outcome']}), {res['wall_s']:.0f} s wall", ""]
    lines += ["| step | status | s | note |", "|---|---|---:|---|"]
    for s in res["steps"]:
        secs = f"{s['seconds']:.0f}" if s["seconds"] is not None else ""
        lines.append(f"| {s['name']} | {s['status']} | {secs} | {s.get('reason') or ''} |")
    if res["metrics"]:
        lines += ["", "| metric | before | after | change |", "|---|---:|---:|---:|"]
        for k, m in res["metrics"].items():
            if m["before"] is None:
                continue
            ch = f"{m['change_pct']:+.1f}%" if m["change_pct"] is not None else ""
            lines.append(f"| {k} | {m['before']:.4f} | {m['after']:.4f} | {ch} |")
    g = res["gate"]
    if g["passed"] is not None:
        lines += ["", f"gate: {'PASS' if g['passed'] else 'FAIL'}"]
        lines += [f"- {'pass' if x['passed'] else 'FAIL'} {x['gate']}: {x['reason']}" for x in g["gates"]]
    sv = res.get("serving")
    if sv:

        def f(x: float | None) -> str:
            return f"{x:.2f}" if x is not None else "-"

        lines += ["", "| serving probes | n | failed | p50 s | p95 s |", "|---|---:|---:|---:|---:|"]
        rows = [("idle", sv["idle"]), ("during the cycle", sv["cycle"])]
        rows += [(f"{k} idle", v["idle"]) for k, v in sv["by_kind"].items()]
        rows += [(f"{k} during", v["cycle"]) for k, v in sv["by_kind"].items()]
        rows += [(f"step {k}", v) for k, v in sv["by_step"].items()]
        for name, st in rows:
            lines.append(f"| {name} | {st['n']} | {st['failed']} | {f(st['p50_s'])} | {f(st['p95_s'])} |")
        if sv["p95_ratio"]:
            lines.append(f"\np95 during the cycle / idle: {sv['p95_ratio']:.2f}x")
    return "\n".join(lines)


PROBES = [
    ("chat", "Hi! How is your day going?"),
    ("domain", "How do I back up a TiDB cluster with BR?"),
]


class Probe(threading.Thread):
    """Sends one short chat request every `every` seconds and records (time, route kind, latency, status)."""

    def __init__(self, url: str, key: str, every: float) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.every = url.rstrip("/"), key, every
        self.samples: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {self.key}"}) as c:
            while not self.stop.is_set():
                kind, text = PROBES[i % len(PROBES)]
                i += 1
                body = {
                    "model": "keel",
                    "messages": [{"role": "user", "content": text}],
                    "max_tokens": 32,
                    "temperature": 0,
                }
                at = datetime.now(UTC)
                t0 = time.perf_counter()
                try:
                    status = c.post(f"{self.url}/v1/chat/completions", json=body).status_code
                except httpx.HTTPError as e:
                    status = type(e).__name__
                self.samples.append(
                    {"at": at.isoformat(), "kind": kind, "s": time.perf_counter() - t0, "status": status}
                )
                self.stop.wait(max(0.0, self.every - (time.perf_counter() - t0)))


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _aware(ts: str | None) -> datetime | None:
    if not ts:
        return None
    d = datetime.fromisoformat(ts)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def serving_summary(samples: list[dict], idle_until: datetime, steps: list[dict]) -> dict:
    """Latency idle vs during the cycle, overall and per route kind, and p95 per step window."""

    def stats(rows: list[dict]) -> dict:
        ok = [r["s"] for r in rows if r["status"] == 200]
        return {
            "n": len(rows),
            "failed": sum(1 for r in rows if r["status"] != 200),
            "p50_s": _pct(ok, 0.5),
            "p95_s": _pct(ok, 0.95),
        }

    idle = [r for r in samples if _aware(r["at"]) < idle_until]
    busy = [r for r in samples if _aware(r["at"]) >= idle_until]
    out: dict = {"idle": stats(idle), "cycle": stats(busy), "by_kind": {}, "by_step": {}}
    for kind, _ in PROBES:
        out["by_kind"][kind] = {
            "idle": stats([r for r in idle if r["kind"] == kind]),
            "cycle": stats([r for r in busy if r["kind"] == kind]),
        }
    for s in steps:
        a, b = _aware(s.get("started_at")), _aware(s.get("finished_at"))
        if a and b:
            rows = [r for r in busy if a <= _aware(r["at"]) < b]
            if rows:
                out["by_step"][s["name"]] = stats(rows)
    i95, c95 = out["idle"]["p95_s"], out["cycle"]["p95_s"]
    out["p95_ratio"] = c95 / i95 if i95 and c95 else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--stages", default=None)
    ap.add_argument("--set", action="append", default=[], help="keel --set overrides (section.key=value)")
    ap.add_argument("--resume", default=None, help="Continue this cycle (interrupted/failed) instead.")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--probe-every", type=float, default=0.0, help="Seconds between serving probes (0: off).")
    ap.add_argument("--idle-s", type=float, default=120.0, help="Probe this long before the cycle starts.")
    ap.add_argument("--key", default=os.environ.get("KEEL_API_KEY"), help="User key for the probes.")
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    a = ap.parse_args()
    probe = None
    if a.probe_every > 0:
        if not a.key:
            print("error: --probe-every needs --key (or KEEL_API_KEY)", file=sys.stderr)
            return 2
        probe = Probe(a.url, a.key, a.probe_every)
        probe.start()
        time.sleep(a.idle_s)
    idle_until = datetime.now(UTC)
    keel = [sys.executable, "-m", "keel", *[x for s in a.set for x in ("--set", s)], "cycle"]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    if a.resume:
        subprocess.run([*keel, "resume", a.resume], cwd=REPO, capture_output=True, text=True)
        proc = subprocess.run([*keel, "show", a.resume, "--json"], cwd=REPO, capture_output=True, text=True)
    else:
        argv = [*keel, "run", "--profile", a.profile, "--json", *(["--stages", a.stages] if a.stages else [])]
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if probe is not None:
        probe.stop.set()
        probe.join()
    if not proc.stdout.strip().startswith("{"):
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        return 1
    cycle = json.loads(proc.stdout)
    res = {
        "cycle_id": cycle["cycle_id"],
        "status": cycle["status"],
        "outcome": cycle.get("outcome"),
        "error": cycle.get("error"),
        "profile": a.profile,
        "wall_s": wall,
        "report": cycle.get("report"),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        **outcome(cycle),
    }
    if probe is not None:
        res["serving"] = serving_summary(probe.samples, idle_until, cycle["steps"])
        res["serving"]["probe_every_s"] = a.probe_every
        res["serving"]["samples"] = probe.samples
    out = a.out or REPO / "bench" / "results" / f"cycle-{Path(a.profile).stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    print(markdown(res))
    print(f"\nsaved {out}")
    return 0 if cycle["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
