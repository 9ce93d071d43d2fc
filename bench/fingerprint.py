"""Probe-fingerprint agreement: a real vLLM CPU engine vs the transformers reference, and how far apart
slightly different weights land (what swap.verify_tolerance must sit between).

Run (prints a Markdown table and saves bench/results/fingerprint.json):
    nice -n 5 python bench/fingerprint.py

One engine (the serving command line: fp32, --enforce-eager) starts on the embedded base; the reference
fingerprints of base and of copies with mlp.down_proj scaled by 1.01 / 1.02 / 1.05 are computed with
transformers (the child process keel uses); the engine is asked for each, then reloaded in place with the
x1.05 weights (the swap's own reload) and asked again.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "platform"))

from bench.support.derive import derive_checkpoint  # noqa: E402
from serving.engine.client import EngineClient  # noqa: E402
from serving.engine.fingerprint import ask_engine, compare, compute_in_child, max_difference  # noqa: E402
from serving.engine.pool import Endpoint, EnginePool  # noqa: E402
from serving.engine.process import find_free_port  # noqa: E402

SCALES = (1.01, 1.02, 1.05)


async def measure(url: str, fps: dict, dirs: dict) -> list[dict]:
    rows = []
    async with httpx.AsyncClient(timeout=300) as c:
        for _ in range(900):
            try:
                if (await c.get(f"{url}/health")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1)
        for serving in ("base", "x1.05"):
            if serving != "base":
                for path, body in (
                    ("/pause?mode=wait", None),
                    (
                        "/collective_rpc",
                        {"method": "reload_weights", "kwargs": {"weights_path": str(dirs[serving])}},
                    ),
                    ("/reset_prefix_cache", None),
                    ("/resume", None),
                ):
                    (await c.post(url + path, json=body)).raise_for_status()
            for ref, fp in fps.items():
                t = time.perf_counter()
                got = await ask_engine(
                    EngineClient(EnginePool(), c, "keel"), Endpoint(url=url, version=serving), fp
                )
                rows.append(
                    {
                        "engine_serves": serving,
                        "reference": ref,
                        "max_abs_logprob_diff": max_difference(fp, got),
                        "greedy_tokens_equal": sum(
                            a.tokens == b.tokens for a, b in zip(fp.probes, got.probes, strict=True)
                        ),
                        "probes": len(fp.probes),
                        "verdict": compare(fp, got) or "match",
                        "ask_s": time.perf_counter() - t,
                    }
                )
    return rows


def main() -> None:
    from keel.checkpoints.basemodel import ensure_base

    base = ensure_base(Path.home() / ".cache" / "keel-test" / "checkpoints", None)
    tmp = Path(tempfile.mkdtemp(prefix="keel-fp-"))
    dirs = {"base": base}
    for s in SCALES:
        dirs[f"x{s:.2f}"] = derive_checkpoint(base, tmp / f"x{s:.2f}", f"x{s:.2f}", scale=s)
    t = time.perf_counter()
    fps = {}
    ref_s = {}
    for name, d in dirs.items():
        t1 = time.perf_counter()
        fps[name] = compute_in_child(d)
        ref_s[name] = time.perf_counter() - t1
    port = find_free_port("127.0.0.1", 0)
    env = dict(os.environ, VLLM_SERVER_DEV_MODE="1", VLLM_CPU_KVCACHE_SPACE="1")
    log = open(tmp / "engine.log", "w")  # noqa: SIM115
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(base),
           "--served-model-name", "keel", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "2048", "--enforce-eager"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        rows = asyncio.run(measure(f"http://127.0.0.1:{port}", fps, dirs))
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(60)
    load = os.getloadavg()
    result = {"reference_s": ref_s, "rows": rows, "loadavg": load, "total_s": time.perf_counter() - t}
    out = REPO / "bench" / "results" / "fingerprint.json"
    out.write_text(json.dumps(result, indent=2))
    print("| engine serves | reference | max abs Δ logprob | greedy equal | verdict |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['engine_serves']} | {r['reference']} | {r['max_abs_logprob_diff']:.2e} | "
              f"{r['greedy_tokens_equal']}/{r['probes']} | {r['verdict'][:60]} |")  # fmt: skip
    print(f"reference fingerprints: {', '.join(f'{k} {v:.1f} s' for k, v in ref_s.items())}; load {load}")


if __name__ == "__main__":
    main()
