"""Simulated users: realistic traffic through the gateway, and the feedback they would leave.

Arrivals are Poisson at ``rate`` requests/s for ``duration`` s. Each picks a question by kind (domain,
small talk, out of scope; Chinese and English as the questions file has them), asks it (streamed or not),
then may react through POST /v1/feedback:
- thumbs up or down;
- an edit built from the question's reference answer (a domain page's summary, never the held-out FAQ);
- a regeneration of an answer it rated down (the same messages again with ``x-keel-regenerate-of``,
  linked by regenerate feedback, and the new answer rated).
Every request goes out under one API key whose name starts with ``simulate``: that name is the tag that
the request log, the mined pairs' provenance and ``keel lineage`` show.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field, ValidationError

from keel.errors import KeelError

QUESTIONS = Path(__file__).with_name("questions.jsonl")
TAG = "simulate"


class SimulateError(KeelError):
    """Bad input to `keel simulate` (a questions file, a rate)."""


class Question(BaseModel):
    kind: str = Field(pattern="^(domain|chat|out_of_scope)$")
    lang: str = "en"
    question: str = Field(min_length=1)
    reference: str | None = None  # a reference answer: the text of simulated edits
    source: str | None = None


class Behaviour(BaseModel):
    """How simulated users act (fractions of requests)."""

    mix: dict[str, float] = Field(default_factory=lambda: {"domain": 0.6, "chat": 0.2, "out_of_scope": 0.2})
    thumbs_up: float = 0.35
    thumbs_down: float = 0.25
    edit: float = 0.2  # of answers that have a reference, after a thumbs-down or none
    regenerate: float = 0.5  # of thumbs-down answers
    stream: float = 0.5
    max_tokens: int = 64
    temperature: float = 0.7
    max_in_flight: int = 4  # arrivals beyond this wait (a small CPU host would only queue them)


def load_questions(path: Path | None) -> list[Question]:
    path = Path(path) if path else QUESTIONS
    if not path.is_file():
        raise SimulateError(f"{path}: questions file not found")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Question.model_validate_json(line))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ())) or "line"
            raise SimulateError(f"{path}:{n}: {where}: {err.get('msg')}") from e
    if not out:
        raise SimulateError(f"{path}: no questions")
    return out


@dataclass
class Report:
    requests: Counter = field(default_factory=Counter)  # by kind/lang
    statuses: Counter = field(default_factory=Counter)
    feedback: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)

    def summary(self, key_name: str, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "tag": key_name,
            "seconds": round(seconds, 1),
            "requests": sum(self.requests.values()),
            "by_kind": dict(sorted(self.requests.items())),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "feedback": dict(sorted(self.feedback.items())),
            "latency_p50_ms": round(statistics.median(lat), 1) if lat else None,
            "latency_p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
            "errors": self.errors[:10],
            "request_ids": self.request_ids,
        }


class Simulator:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        questions: list[Question],
        behaviour: Behaviour | None = None,
        model: str = "keel",
        seed: int | None = None,
    ):
        self.url = base_url.rstrip("/")
        self.key = api_key
        self.questions = questions
        self.by_kind: dict[str, list[Question]] = {}
        for q in questions:
            self.by_kind.setdefault(q.kind, []).append(q)
        self.b = behaviour or Behaviour()
        self.model = model
        self.rng = random.Random(seed)
        self.report = Report()

    def pick(self) -> Question:
        kinds = [k for k in self.b.mix if k in self.by_kind]
        kind = self.rng.choices(kinds, weights=[self.b.mix[k] for k in kinds])[0]
        return self.rng.choice(self.by_kind[kind])

    async def run(self, rate: float, duration: float) -> Report:
        if rate <= 0 or duration <= 0:
            raise SimulateError("--rate and --duration must be positive")
        limits = httpx.Limits(max_connections=self.b.max_in_flight * 2)
        headers = {"Authorization": f"Bearer {self.key}"}
        gate = asyncio.Semaphore(self.b.max_in_flight)
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=300, limits=limits) as c:
            tasks: list[asyncio.Task] = []
            t_end = time.monotonic() + duration
            while True:
                wait = self.rng.expovariate(rate)
                if time.monotonic() + wait > t_end:
                    break
                await asyncio.sleep(wait)
                await gate.acquire()
                task = asyncio.create_task(self._user(c, self.pick()))
                task.add_done_callback(lambda _t: gate.release())
                tasks.append(task)
            await asyncio.gather(*tasks)
        return self.report

    async def _ask(self, c: httpx.AsyncClient, q: Question, regenerate_of: str | None = None) -> str | None:
        stream = self.rng.random() < self.b.stream
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": q.question}],
            "max_tokens": self.b.max_tokens,
            "temperature": self.b.temperature,
            "stream": stream,
        }
        headers = {"x-keel-regenerate-of": regenerate_of} if regenerate_of else {}
        self.report.requests[f"{q.kind}/{q.lang}"] += 1
        t0 = time.perf_counter()
        try:
            if stream:
                async with c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                    text = await r.aread() if r.status_code >= 400 else None
                    if text is None:
                        async for _ in r.aiter_bytes():
                            pass
            else:
                r = await c.post("/v1/chat/completions", json=body, headers=headers)
                text = r.content if r.status_code >= 400 else None
        except httpx.HTTPError as e:
            self.report.statuses["transport_error"] += 1
            self.report.errors.append(f"{type(e).__name__}: {e}")
            return None
        self.report.latencies_ms.append((time.perf_counter() - t0) * 1000)
        self.report.statuses[r.status_code] += 1
        if text is not None:
            self.report.errors.append(f"{r.status_code}: {text[:200].decode('utf-8', 'replace')}")
            return None
        rid = r.headers.get("x-request-id")
        if rid:
            self.report.request_ids.append(rid)
        return rid

    async def _feedback(self, c: httpx.AsyncClient, body: dict[str, Any]) -> None:
        r = await c.post("/v1/feedback", json=body)
        if r.status_code >= 300:
            self.report.errors.append(f"feedback {r.status_code}: {r.text[:200]}")
            return
        self.report.feedback[body["type"] + ("/" + body["rating"] if "rating" in body else "")] += 1

    async def _user(self, c: httpx.AsyncClient, q: Question) -> None:
        rid = await self._ask(c, q)
        if rid is None or (q.kind == "out_of_scope" and self.rng.random() < 0.8):
            return  # refusals are mostly left alone
        roll = self.rng.random()
        if roll < self.b.thumbs_up:
            await self._feedback(c, {"type": "thumbs", "request_id": rid, "rating": "up"})
            return
        down = roll < self.b.thumbs_up + self.b.thumbs_down
        if down:
            await self._feedback(c, {"type": "thumbs", "request_id": rid, "rating": "down"})
        if q.reference and self.rng.random() < self.b.edit:
            await self._feedback(c, {"type": "edit", "request_id": rid, "edited_text": q.reference})
        elif down and self.rng.random() < self.b.regenerate:
            new = await self._ask(c, q, regenerate_of=rid)
            if new is not None:
                await self._feedback(c, {"type": "regenerate", "request_id": rid, "new_request_id": new})
                rating = "up" if self.rng.random() < 0.7 else "down"
                await self._feedback(c, {"type": "thumbs", "request_id": new, "rating": rating})


def simulate(
    base_url: str,
    api_key: str,
    key_name: str,
    rate: float,
    duration: float,
    questions: Path | None = None,
    seed: int | None = None,
    behaviour: Behaviour | None = None,
) -> dict[str, Any]:
    sim = Simulator(base_url, api_key, load_questions(questions), behaviour, seed=seed)
    t0 = time.monotonic()
    report = asyncio.run(sim.run(rate, duration))
    return report.summary(key_name, time.monotonic() - t0)


def summary_text(s: dict[str, Any]) -> str:
    lines = [
        f"{s['requests']} requests in {s['seconds']} s under key {s['tag']!r}: "
        + ", ".join(f"{k} {v}" for k, v in s["by_kind"].items()),
        "status: "
        + ", ".join(f"{k} ×{v}" for k, v in s["statuses"].items())
        + (
            f"; latency p50 {s['latency_p50_ms']} ms, p95 {s['latency_p95_ms']} ms"
            if s["latency_p50_ms"]
            else ""
        ),
        "feedback: " + (", ".join(f"{k} ×{v}" for k, v in s["feedback"].items()) or "none"),
    ]
    lines += [f"  error: {e}" for e in s["errors"]]
    return "\n".join(lines)


def dumps(s: dict[str, Any]) -> str:
    return json.dumps(s, indent=2, ensure_ascii=False)
