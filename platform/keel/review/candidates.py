"""Second answers for sampled prompts, generated off the request path, so annotators have pairs.

An asyncio task in the platform wakes every ``candidate_interval_s``, takes logged requests it has not
looked at yet, keeps a deterministic ``candidate_rate`` share of them (by request id hash) and asks an
engine for another answer at a different temperature and seed — from another checkpoint version when
two are being served. The answer lands in ``candidates`` and the two answers become a pending pair.

Both answers come from the same prompt: the messages the engine received for the logged request
(system prompt, domain template with its retrieved chunks, history), and each side is the model's own
text, never the "Sources" list the gateway appends. So the pair trains on what serving really does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
import zlib
from typing import Any

from keel.annotation_config import AnnotationConfig
from keel.cycle.mining import reviews_needed
from keel.store import flywheel, requestlog
from keel.store.db import Database
from serving.engine.client import EngineClient
from serving.engine.pool import Endpoint, EnginePool

log = logging.getLogger("keel.candidates")


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def sampled(request_id: str, rate: float) -> bool:
    return (zlib.crc32(request_id.encode()) % 10_000) < rate * 10_000


class CandidateSampler:
    def __init__(self, db: Database, pool: EnginePool, cfg: AnnotationConfig):
        self.db = db
        self.pool = pool
        self.cfg = cfg
        self.engine: EngineClient | None = None
        self.watermark: str | None = None  # ISO time of the last request looked at
        self.generated = 0
        self._task: asyncio.Task | None = None
        self._scrub = None

    def start(self, engine: EngineClient) -> None:
        self.engine = engine
        if self.cfg.candidate_rate > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="keel-candidates")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.candidate_interval_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never take the platform down; try again next tick
                log.warning("candidate sampler: %s", e)

    async def tick(self) -> int:
        rows = await asyncio.to_thread(self._pick)
        made = 0
        for row in rows:
            out = await self._generate(row)
            if out is not None:
                await asyncio.to_thread(self._store, row, *out)
                made += 1
        self.generated += made
        return made

    def _pick(self) -> list[dict[str, Any]]:
        rows = requestlog.answered_since(self.db, self.watermark)
        picked = []
        for r in rows:
            if len(picked) >= self.cfg.candidate_batch:
                break
            self.watermark = r["created_at"]
            if sampled(r["request_id"], self.cfg.candidate_rate):
                picked.append(r)
        return picked

    def _endpoint(self, version: str | None) -> Endpoint | None:
        healthy = [e for e in self.pool.endpoints if e.healthy]
        other = [e for e in healthy if e.version != version]
        pool = other or healthy
        return min(pool, key=lambda e: e.outstanding) if pool else None

    async def _generate(self, row: dict[str, Any]) -> tuple[str, Endpoint, float] | None:
        # the prompt the engine answered (logged); rows from before it was logged fall back to the client's
        messages = _json(row.get("engine_messages")) or _json(row["messages"])
        row["engine_messages"] = messages
        params = _json(row["params"]) or {}
        ep = self._endpoint(row.get("checkpoint_version"))
        if ep is None or self.engine is None:
            return None
        payload = {
            "messages": messages,
            "temperature": self.cfg.candidate_temperature,
            "seed": random.randrange(1 << 30),
            "max_tokens": min(
                int(params.get("max_tokens") or self.cfg.candidate_max_tokens), self.cfg.candidate_max_tokens
            ),
        }
        t0 = time.perf_counter()
        reply = await self.engine.complete(payload, endpoint=ep)  # counted like a request (balancer, drains)
        if not reply.ok:
            log.warning("candidate for %s: engine answered %s", row["request_id"], reply.status)
            return None
        text = reply.text()
        return (text, ep, (time.perf_counter() - t0) * 1000.0) if text.strip() else None

    def _store(self, row: dict[str, Any], text: str, ep: Endpoint, latency_ms: float) -> None:
        if self._scrub is None:
            from training.data.pii import Scrubber

            self._scrub = Scrubber().scrub
        rid, original = row["request_id"], row["response_text"]
        cid = "cand-" + uuid.uuid4().hex[:16]
        db = self.db
        flywheel.insert_candidate(
            db, cid, rid, text, ep.version, {"temperature": self.cfg.candidate_temperature}, latency_ms
        )
        messages = [
            {**m, "content": self._scrub(m["content"])} if isinstance(m.get("content"), str) else m
            for m in row["engine_messages"]
        ]
        # which answer is proposed as better is arbitrary here: alternate by id so neither side is favoured
        a, b = (original, text) if zlib.crc32(cid.encode()) % 2 else (text, original)
        key = f"candidate:{rid}:{cid}"
        flywheel.insert_pairs(
            db,
            [
                {
                    "pair_id": "pair-" + uuid.uuid4().hex[:16],
                    "pair_key": key,
                    "source": "candidate",
                    "prompt": json.dumps(messages, ensure_ascii=False),
                    "chosen": self._scrub(a),
                    "rejected": self._scrub(b),
                    "route": row.get("route"),
                    "retrieved": row.get("retrieved")
                    if isinstance(row.get("retrieved"), str)
                    else json.dumps(row.get("retrieved") or []),
                    "provenance": json.dumps(
                        {
                            "rule": "candidate",
                            "request_ids": [rid],
                            "candidate_id": cid,
                            "feedback_ids": [],
                            "routes": [row.get("route")],
                            "checkpoint_versions": [row.get("checkpoint_version"), ep.version],
                            "original_is": "chosen" if a == original else "rejected",
                        }
                    ),
                    "status": "pending",
                    "required_reviews": reviews_needed(key, self.cfg.double_annotate_fraction),
                }
            ],
        )
