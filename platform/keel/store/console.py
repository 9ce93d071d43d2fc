"""The console's read queries: traffic, latency, errors, feedback per version, recent requests, cycles.

Every query is parameterised; user input only ever reaches DuckDB as a bound value.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from keel.store.db import Database


def _iso(v: Any) -> str | None:
    return v.isoformat() if v is not None else None


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def window(hours: float, buckets: int = 48) -> tuple[datetime, int]:
    """(since, bucket seconds) for the last ``hours`` cut into about ``buckets`` buckets."""
    hours = min(max(hours, 0.05), 24 * 90)
    bucket_s = max(10, int(hours * 3600 / buckets))
    return datetime.now(UTC) - timedelta(hours=hours), bucket_s


def traffic(db: Database, hours: float) -> dict[str, Any]:
    """Per time bucket: requests by route, by version, errors, and latency percentiles of successes.
    The window starts at the first request when traffic is younger than ``hours`` (a new platform
    shows its minutes of traffic over many buckets, not in one)."""
    since, _ = window(hours)
    first = db.fetchall("SELECT min(created_at) FROM requests WHERE created_at >= ?", [since])[0][0]
    if first is not None and first > since:
        age_h = (datetime.now(UTC) - first).total_seconds() / 3600
        since, bucket_s = window(max(age_h * 1.05, 10 / 60))
    else:
        since, bucket_s = window(hours)
    rows = db.fetchall(
        "SELECT epoch(time_bucket(to_seconds(?), created_at)) AS t, coalesce(route, '') AS route, "
        "coalesce(checkpoint_version, '') AS version, count(*) AS n, "
        "count(*) FILTER (WHERE status_code >= 400) AS errors "
        "FROM requests WHERE created_at >= ? GROUP BY ALL ORDER BY t",
        [bucket_s, since],
    )
    lat = db.fetchall(
        "SELECT epoch(time_bucket(to_seconds(?), created_at)) AS t, "
        "quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q, quantile_cont(ttft_ms, 0.5) AS ttft "
        "FROM requests WHERE created_at >= ? AND status_code < 400 AND latency_ms IS NOT NULL "
        "GROUP BY ALL ORDER BY t",
        [bucket_s, since],
    )
    buckets: dict[float, dict[str, Any]] = {}
    for t, route, version, n, errors in rows:
        b = buckets.setdefault(t, {"t": t, "total": 0, "errors": 0, "routes": {}, "versions": {}})
        b["total"] += n
        b["errors"] += errors
        b["routes"][route] = b["routes"].get(route, 0) + n
        b["versions"][version] = b["versions"].get(version, 0) + n
    for t, q, ttft in lat:
        b = buckets.setdefault(t, {"t": t, "total": 0, "errors": 0, "routes": {}, "versions": {}})
        b["p50"], b["p95"], b["p99"] = (float(x) for x in q)
        b["ttft_p50"] = float(ttft) if ttft is not None else None
    totals = db.fetchall(
        "SELECT count(*), count(*) FILTER (WHERE status_code >= 400), "
        "quantile_cont(latency_ms, [0.5, 0.95, 0.99]) FILTER (WHERE status_code < 400) "
        "FROM requests WHERE created_at >= ?",
        [since],
    )[0]
    q = totals[2] or [None, None, None]
    return {
        "since": _iso(since),
        "bucket_s": bucket_s,
        "buckets": [buckets[t] for t in sorted(buckets)],
        "total": totals[0],
        "errors": totals[1],
        "p50": q[0],
        "p95": q[1],
        "p99": q[2],
    }


def feedback_rates(db: Database) -> list[dict[str, Any]]:
    """Per checkpoint version: answered requests and the feedback they got (counts and per-request rates)."""
    served = dict(
        db.fetchall(
            "SELECT checkpoint_version, count(*) FROM requests "
            "WHERE checkpoint_version IS NOT NULL AND status_code < 400 GROUP BY 1"
        )
    )
    got = db.fetchall(
        "SELECT r.checkpoint_version, "
        "count(*) FILTER (WHERE f.kind = 'thumbs' AND f.rating > 0), "
        "count(*) FILTER (WHERE f.kind = 'thumbs' AND f.rating < 0), "
        "count(*) FILTER (WHERE f.kind = 'edit'), count(*) FILTER (WHERE f.kind = 'regenerate'), "
        "count(*) FILTER (WHERE f.kind = 'choice') "
        "FROM feedback f JOIN requests r USING (request_id) WHERE r.checkpoint_version IS NOT NULL GROUP BY 1"
    )
    by = {v: (up, down, ed, regen, ch) for v, up, down, ed, regen, ch in got}
    out = []
    for version in sorted(set(served) | set(by)):
        n = served.get(version, 0)
        up, down, ed, regen, ch = by.get(version, (0, 0, 0, 0, 0))
        row = {"version": version, "requests": n, "thumbs_up": up, "thumbs_down": down, "edit": ed}
        row.update({"regenerate": regen, "choice": ch})
        row["rates"] = {
            k: (row[k] / n if n else None)
            for k in ("thumbs_up", "thumbs_down", "edit", "regenerate", "choice")
        }
        out.append(row)
    return out


def _last_user(messages: Any) -> str:
    for m in reversed(_json(messages) or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else json.dumps(c, ensure_ascii=False)
    return ""


def _sources(route_info: Any, retrieved: Any) -> list[str]:
    """The titles the answer cited (RouteInfo.sources); rows from before route_info: the chunks' files."""
    info = _json(route_info) or {}
    names = []
    for s in info.get("sources") or []:
        if isinstance(s, dict):
            names.append(str(s.get("title") or s.get("path") or s.get("id") or ""))
    if not names:  # chunk ids are "<file path>::<hash>": the file's name says which document
        names = [
            str(r["id"]).split("::")[0].rsplit("/", 1)[-1]
            for r in (_json(retrieved) or [])
            if isinstance(r, dict) and r.get("id")
        ]
    return list(dict.fromkeys(names))


FeedbackFilter = Literal["any", "none", "thumbs", "edit", "regenerate", "choice", "route"]


class RequestFilter(BaseModel):
    """The console's request-list filters (query parameters); an empty value means no filter."""

    q: str | None = None
    route: str | None = None
    version: str | None = None
    status: Literal["ok", "error"] | None = None
    feedback: FeedbackFilter | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0)

    @field_validator("q", "route", "version", "status", "feedback", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return v or None


def recent_requests(db: Database, f: RequestFilter) -> dict[str, Any]:
    """Newest first, with filters; ``q`` searches the messages and the answer (case-insensitive)."""
    q, route, version, status, feedback = f.q, f.route, f.version, f.status, f.feedback
    where, args = [], []
    if q:  # a literal substring: LIKE's own wildcards in the query are escaped
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(CAST(messages AS VARCHAR) ILIKE ? ESCAPE '\\' OR response_text ILIKE ? ESCAPE '\\')")
        args += [like, like]
    if route:
        where.append("route = ?")
        args.append(route)
    if version:
        where.append("checkpoint_version = ?")
        args.append(version)
    if status == "ok":
        where.append("status_code < 400")
    elif status == "error":
        where.append("status_code >= 400")
    if feedback == "any":
        where.append("EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = r.request_id)")
    elif feedback == "none":
        where.append("NOT EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = r.request_id)")
    elif feedback:
        where.append("EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = r.request_id AND f.kind = ?)")
        args.append(feedback)
    cond = ("WHERE " + " AND ".join(where)) if where else ""
    total = db.fetchall(f"SELECT count(*) FROM requests r {cond}", args)[0][0]
    rows = db.fetchall(
        "SELECT request_id, created_at, route, checkpoint_version, status_code, latency_ms, ttft_ms, stream, "
        "messages, response_text, retrieved, route_info, error, "
        "(SELECT list(f.kind ORDER BY f.created_at) FROM feedback f WHERE f.request_id = r.request_id) "
        f"FROM requests r {cond} ORDER BY created_at DESC LIMIT ? OFFSET ?",
        [*args, f.limit, f.offset],
    )
    items = []
    for rid, created, rt, ver, code, lat, ttft, stream, msgs, resp, retrieved, info, err, fb in rows:
        items.append(
            {
                "request_id": rid,
                "created_at": _iso(created),
                "route": rt,
                "version": ver,
                "status": code,
                "latency_ms": lat,
                "ttft_ms": ttft,
                "stream": stream,
                "message": _last_user(msgs),
                "response": resp or "",
                "sources": _sources(info, retrieved),
                "feedback": list(fb or []),
                "error": err,
            }
        )
    facets = {
        "routes": [
            r[0]
            for r in db.fetchall("SELECT DISTINCT route FROM requests WHERE route IS NOT NULL ORDER BY 1")
        ],
        "versions": [
            r[0]
            for r in db.fetchall(
                "SELECT DISTINCT checkpoint_version FROM requests WHERE checkpoint_version IS NOT NULL ORDER BY 1"
            )
        ],
    }
    return {"total": total, "items": items, "facets": facets}


def has_tables(db: Database, *names: str) -> bool:
    have = {r[0] for r in db.fetchall("SELECT table_name FROM duckdb_tables()")}
    return set(names) <= have


def cycles(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    """Recent flywheel cycles with their steps (the cycle's own tables)."""
    if not has_tables(db, "cycles", "cycle_steps"):
        return []
    rows = db.fetchall(
        "SELECT cycle_id, status, trigger, outcome, error, report, started_at, finished_at, dry_run "
        "FROM cycles ORDER BY started_at DESC LIMIT ?",
        [limit],
    )
    out = []
    for cid, status, trigger, outcome, error, report, started, finished, dry in rows:
        steps = db.fetchall(
            "SELECT name, seq, status, started_at, finished_at, reason, error FROM cycle_steps "
            "WHERE cycle_id = ? ORDER BY seq",
            [cid],
        )
        out.append(
            {
                "cycle_id": cid,
                "status": status,
                "trigger": trigger,
                "outcome": outcome,
                "error": error,
                "has_report": bool(report),
                "started_at": _iso(started),
                "finished_at": _iso(finished),
                "dry_run": dry,
                "steps": [
                    {
                        "name": n,
                        "seq": seq,
                        "status": st,
                        "started_at": _iso(a),
                        "finished_at": _iso(b),
                        "reason": reason,
                        "error": e,
                    }
                    for n, seq, st, a, b, reason, e in steps
                ],
            }
        )
    return out


def cycle_report_path(db: Database, cycle_id: str) -> str | None:
    if not has_tables(db, "cycles"):
        return None
    rows = db.fetchall("SELECT report FROM cycles WHERE cycle_id = ?", [cycle_id])
    return rows[0][0] if rows and rows[0][0] else None


def gates(db: Database) -> list[dict[str, Any]]:
    """Gate decisions, newest first (the evals table)."""
    rows = db.fetchall(
        "SELECT eval_id, version, name, baseline, passed, path, summary, recorded_at FROM evals "
        "WHERE kind = 'gate' ORDER BY recorded_at DESC"
    )
    return [
        {
            "eval_id": e,
            "version": v,
            "name": n,
            "baseline": b,
            "passed": p,
            "summary": _json(s),
            "recorded_at": _iso(t),
        }
        for e, v, n, b, p, _path, s, t in rows
    ]


def eval_path(db: Database, eval_id: str) -> str | None:
    rows = db.fetchall("SELECT path FROM evals WHERE eval_id = ?", [eval_id])
    return rows[0][0] if rows else None
