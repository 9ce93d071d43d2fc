"""Simulated users: realistic traffic through the gateway, and the feedback they would leave.

Arrivals are Poisson at ``rate`` requests/s for ``duration`` s. Each picks a question by kind (domain,
small talk, out of scope; Chinese and English as the questions file has them), asks it (streamed or not),
then may react through POST /v1/feedback:
- thumbs up or down;
- an edit built from the question's reference answer (a domain page's summary, never the held-out FAQ);
- a regeneration of an answer it rated down (the same messages again with ``x-keel-regenerate-of``,
  linked by regenerate feedback, and the new answer rated).
With the judge on (the default), a domain answer that has a reference is scored against it
(:mod:`training.eval.judge`) and the score decides those reactions through the documented, seeded user
model of :mod:`keel.simulate.users` (a better answer gets fewer thumbs down and edits). Other questions,
and every question with ``judge=False`` (`--judge off`), keep fixed rates (:class:`Behaviour`).
The question bank is split: ``seen`` questions are the traffic that feeds training, ``held_out`` ones
(other questions and paraphrases of seen ones) are sent only to measure: their answers are judged and the
user model's reactions recorded, but no feedback is posted for them, so no held-out question, answer or
reference is ever mined into training.
Every request goes out under one API key whose name starts with ``simulate``: that name is the tag that
the request log, the mined pairs' provenance and ``keel lineage`` show.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from keel.errors import KeelError
from keel.simulate.users import UserModel, user_rng
from keelcommon.jsonl import read_jsonl

QUESTIONS = Path(__file__).with_name("questions.jsonl")
TAG = "simulate"


class SimulateError(KeelError):
    """Bad input to `keel simulate` (a questions file, a rate)."""


class Question(BaseModel):
    kind: str = Field(pattern="^(domain|chat|out_of_scope)$")
    lang: str = "en"
    question: str = Field(min_length=1)
    reference: str | None = (
        None  # a reference answer: the text of simulated edits, what the judge compares with
    )
    source: str | None = None
    split: Literal["seen", "held_out"] = "seen"  # held_out: sent only to measure, never to feed training
    paraphrase_of: str | None = None  # a held-out paraphrase: the seen question it rewords


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
    judge: bool = True  # score answers that have a reference and react through `users`
    users: UserModel = Field(default_factory=UserModel)


SPLITS = ("seen", "held_out", "all")


def load_questions(path: Path | None, split: str = "all") -> list[Question]:
    """The questions of ``path`` (default: the shipped bank) in ``split`` (seen, held_out or all)."""
    if split not in SPLITS:
        raise SimulateError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    path = Path(path) if path else QUESTIONS
    if not path.is_file():
        raise SimulateError(f"{path}: questions file not found")
    out = read_jsonl(path, Question.model_validate, error=SimulateError, what="questions")
    if split != "all":
        out = [q for q in out if q.split == split]
        if not out:
            raise SimulateError(f"{path}: no {split} questions")
    return out


def answer_text(content: str) -> str:
    """The engine's answer: what the gateway sent without the "Sources" list it appends to domain answers."""
    head, sep, _ = content.rpartition("\n\nSources:\n")
    return head if sep else content


def _sse_text(raw: bytes) -> str:
    """The text of a streamed chat completion (the content deltas of its SSE events)."""
    parts = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        try:
            choices = json.loads(line[6:]).get("choices") or []
        except (json.JSONDecodeError, AttributeError):
            continue
        for c in choices:
            parts.append(((c or {}).get("delta") or {}).get("content") or "")
    return "".join(parts)


def _interval(k: float, n: int) -> list[float] | None:
    """Wilson 95% interval of a proportion k/n."""
    if n == 0:
        return None
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def judged_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per split (and all): judged answers, mean judge score, thumbs-down, edit and regeneration rates,
    each with a 95% interval (normal for the mean, Wilson for rates). Regenerated answers are not counted:
    a rate is over first answers, as users see the model."""
    out: dict[str, Any] = {}
    first = [r for r in rows if not r.get("regenerated")]
    for name in ("seen", "held_out", "all"):
        rs = first if name == "all" else [r for r in first if r["split"] == name]
        n = len(rs)
        if not n:
            continue
        scores = [r["score"] for r in rs]
        mean = statistics.fmean(scores)
        sd = statistics.stdev(scores) if n > 1 else 0.0
        half = 1.96 * sd / math.sqrt(n)
        down = sum(r["thumb"] == "down" for r in rs)
        edits = sum(r["edit"] for r in rs)
        regen = sum(r["regenerate"] for r in rs)
        out[name] = {
            "n": n,
            "score": round(mean, 4),
            "score_ci": [round(mean - half, 4), round(mean + half, 4)],
            "thumbs_down_rate": round(down / n, 4),
            "thumbs_down_ci": _interval(down, n),
            "edit_rate": round(edits / n, 4),
            "edit_ci": _interval(edits, n),
            "regenerate_rate": round(regen / n, 4),
            "other_language": sum(r["reason"] == "language" for r in rs),
            "empty": sum(r["reason"] == "empty" for r in rs),
        }
    return out


@dataclass
class Report:
    requests: Counter = field(default_factory=Counter)  # by kind/lang
    statuses: Counter = field(default_factory=Counter)
    feedback: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    judged: list[dict[str, Any]] = field(default_factory=list)  # one row per judged answer

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
            "judge": judged_summary(self.judged) if self.judged else None,
            "judged": self.judged,
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
        transport: httpx.AsyncBaseTransport | None = None,  # tests: a fake gateway
    ):
        self.url = base_url.rstrip("/")
        self.key = api_key
        self.questions = questions
        self.by_kind: dict[str, list[Question]] = {}
        for q in questions:
            self.by_kind.setdefault(q.kind, []).append(q)
        self.b = behaviour or Behaviour()
        self.model = model
        # unseeded: a fresh seed, so that users' own generators (seed, arrival) differ between runs
        self.seed = seed if seed is not None else random.randrange(2**32)
        self.rng = random.Random(self.seed)
        self.report = Report()
        self.transport = transport
        self._judge = None
        if self.b.judge:
            from training.eval.judge import judge

            self._judge = judge()

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
        async with httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=300, limits=limits, transport=self.transport
        ) as c:
            tasks: list[asyncio.Task] = []
            t_end = time.monotonic() + duration
            while True:
                wait = self.rng.expovariate(rate)
                if time.monotonic() + wait > t_end:
                    break
                await asyncio.sleep(wait)
                await gate.acquire()
                task = asyncio.create_task(self._user(c, self.pick(), len(tasks)))
                task.add_done_callback(lambda _t: gate.release())
                tasks.append(task)
            await asyncio.gather(*tasks)
        return self.report

    async def _ask(
        self,
        c: httpx.AsyncClient,
        q: Question,
        rng: random.Random,
        n: int,
        regenerate_of: str | None = None,
    ) -> tuple[str, str] | None:
        """Send ``q`` as arrival ``n``'s user; (request id, the answer's text), or None when it failed."""
        stream = rng.random() < self.b.stream
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": q.question}],
            "max_tokens": self.b.max_tokens,
            "temperature": self.b.temperature,
            "stream": stream,
            # one simulated person per arrival (a regeneration is the same person): the whole simulation
            # shares one API key, so without it a canary would split by question, not by user
            "user": f"simulated-{self.seed}-{n}",
        }
        headers = {"x-keel-regenerate-of": regenerate_of} if regenerate_of else {}
        self.report.requests[f"{q.kind}/{q.lang}"] += 1
        t0 = time.perf_counter()
        try:
            if stream:
                async with c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                    raw = await r.aread()
                    text = raw if r.status_code >= 400 else None
                    content = _sse_text(raw) if text is None else ""
            else:
                r = await c.post("/v1/chat/completions", json=body, headers=headers)
                text = r.content if r.status_code >= 400 else None
                content = ""
                if text is None:
                    try:
                        content = r.json()["choices"][0]["message"]["content"] or ""
                    except (ValueError, KeyError, IndexError, TypeError):
                        content = ""  # an answer the user cannot read: judged as empty
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
        if not rid:
            return None
        self.report.request_ids.append(rid)
        return rid, answer_text(content)

    async def _feedback(self, c: httpx.AsyncClient, body: dict[str, Any]) -> None:
        r = await c.post("/v1/feedback", json=body)
        if r.status_code >= 300:
            self.report.errors.append(f"feedback {r.status_code}: {r.text[:200]}")
            return
        self.report.feedback[body["type"] + ("/" + body["rating"] if "rating" in body else "")] += 1

    def _judge_row(self, q: Question, rid: str, answer: str, regenerated: bool = False) -> dict[str, Any]:
        assert self._judge is not None
        j = self._judge.score(answer, q.reference, lang=q.lang)  # never raises: lowest score instead
        row = {
            "request_id": rid,
            "split": q.split,
            "lang": q.lang,
            "question": q.question,
            "score": j.score,
            "reason": j.reason,
            "thumb": None,
            "edit": False,
            "regenerate": False,
            "regenerated": regenerated,
        }
        self.report.judged.append(row)
        return row

    async def _score(self, c: httpx.AsyncClient, row: dict[str, Any]) -> None:
        """The judge's score as `score` feedback: what a running canary compares between its arms (mining
        never reads it: a score can stop a candidate, not train one)."""
        await self._feedback(c, {"type": "score", "request_id": row["request_id"], "score": row["score"]})

    async def _judged_user(self, c: httpx.AsyncClient, q: Question, rid: str, answer: str, n: int) -> None:
        """The user model of :mod:`keel.simulate.users`, on the judge's score of the answer."""
        um, rng = self.b.users, user_rng(self.seed, n)
        row = self._judge_row(q, rid, answer)
        row["arrival"] = n
        act = um.react(row["score"], rng)
        row.update(thumb=act.thumb, edit=act.edit, regenerate=act.regenerate)
        if q.split == "held_out":
            # Measured, never fed back: mining needs feedback, so nothing a held-out question leaves (its
            # reference least of all, as an edit) can reach training and inflate the next measurement.
            # The row keeps what the user would have done, which is what the rates report.
            return
        await self._score(c, row)
        if act.thumb:
            await self._feedback(c, {"type": "thumbs", "request_id": rid, "rating": act.thumb})
        if act.edit:
            await self._feedback(c, {"type": "edit", "request_id": rid, "edited_text": q.reference})
        if act.regenerate:
            new = await self._ask(c, q, rng, n, regenerate_of=rid)
            if new is not None:
                await self._feedback(c, {"type": "regenerate", "request_id": rid, "new_request_id": new[0]})
                again = self._judge_row(q, new[0], new[1], regenerated=True)
                await self._score(c, again)
                again["thumb"] = um.rate_again(again["score"], rng)
                await self._feedback(c, {"type": "thumbs", "request_id": new[0], "rating": again["thumb"]})

    async def _user(self, c: httpx.AsyncClient, q: Question, n: int = 0) -> None:
        # Everything a user does draws from generators of its own (seed, arrival number): the run's
        # generator draws only arrival times and questions, so a seed fixes the question sequence whatever
        # order the answers come back in (the same traffic before and after a cycle).
        rng = random.Random(f"keel-simulate-ask:{self.seed}:{n}")
        got = await self._ask(c, q, rng, n)
        if got is None:
            return
        rid, answer = got
        if self._judge is not None and q.kind == "domain" and q.reference:
            await self._judged_user(c, q, rid, answer, n)
            return
        rng = user_rng(self.seed, n)
        if q.kind == "out_of_scope" and rng.random() < 0.8:
            return  # refusals are mostly left alone
        roll = rng.random()
        if roll < self.b.thumbs_up:
            await self._feedback(c, {"type": "thumbs", "request_id": rid, "rating": "up"})
            return
        down = roll < self.b.thumbs_up + self.b.thumbs_down
        if down:
            await self._feedback(c, {"type": "thumbs", "request_id": rid, "rating": "down"})
        if q.reference and rng.random() < self.b.edit:
            await self._feedback(c, {"type": "edit", "request_id": rid, "edited_text": q.reference})
        elif down and rng.random() < self.b.regenerate:
            new = await self._ask(c, q, rng, n, regenerate_of=rid)
            if new is not None:
                await self._feedback(c, {"type": "regenerate", "request_id": rid, "new_request_id": new[0]})
                rating = "up" if rng.random() < 0.7 else "down"
                await self._feedback(c, {"type": "thumbs", "request_id": new[0], "rating": rating})


def simulate(sim: Simulator, key_name: str, rate: float, duration: float, split: str) -> dict[str, Any]:
    """Run ``sim`` for ``duration`` seconds at ``rate`` requests/s; the summary names the key and split."""
    t0 = time.monotonic()
    report = asyncio.run(sim.run(rate, duration))
    out = report.summary(key_name, time.monotonic() - t0)
    out["split"], out["seed"] = split, sim.seed
    out["judge_on"] = sim.b.judge
    if sim._judge is not None:
        out["judge_signature"] = sim._judge.signature
    return out


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
    for split, j in (s.get("judge") or {}).items():
        lines.append(
            f"judged {split}: {j['n']} answers, score {j['score']:.3f} "
            f"(95% CI {j['score_ci'][0]:.3f}..{j['score_ci'][1]:.3f}), "
            f"thumbs down {j['thumbs_down_rate']:.0%}, edits {j['edit_rate']:.0%}, "
            f"regenerations {j['regenerate_rate']:.0%}"
            + (f", {j['other_language']} in another language" if j["other_language"] else "")
        )
    lines += [f"  error: {e}" for e in s["errors"]]
    return "\n".join(lines)


def dumps(s: dict[str, Any]) -> str:
    return json.dumps(s, indent=2, ensure_ascii=False)
