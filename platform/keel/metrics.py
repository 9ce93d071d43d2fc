"""Prometheus metrics of one platform process (served at ``GET /metrics``, see keel.api.metrics).

Two kinds of series:
- counted on the request path: every request-log record that the gateway hands its sink also passes
  through ``PlatformMetrics.observe`` (requests by route / version / status, TTFT and total latency,
  requests per engine);
- read at scrape time (``_PlatformCollector``): request-log queue and spill, engine health and each
  engine's own vLLM gauges (its ``/metrics``, fetched with a short timeout), swaps from the registry's
  history, flywheel cycles and their steps from the cycle tables (what the cycle records is the one
  source: nothing to call from the cycle, and it survives restarts), the document index's progress.
  Nothing is polled in the background.

Each platform has its own ``CollectorRegistry`` (never the process-global default one), so tests can
run several platforms in one process and the output holds only Keel's series.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from keel.store import cycles, swaps
from serving.records import RecordError, RecordSink, RequestRecord

if TYPE_CHECKING:  # the platform imports this module, not the other way round at run time
    from keel.runtime import Runtime
    from keel.store.db import Database
    from keel.store.requestlog import RequestLogWriter
    from serving.engine.pool import EnginePool
    from serving.engine.supervisor import EngineSupervisor
    from serving.engine.swap import Swapper
    from serving.rag.background import BackgroundIndexer

log = logging.getLogger("keel.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latency buckets in seconds: a CPU engine answers in 0.1-30 s, a GPU one in 10 ms-5 s.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
# the background indexer's status keys and the gauges that show them
INDEX_GAUGES = {
    "chunks_total": ("keel_index_chunks", "Chunks in the lexical catalog"),
    "chunks_embedded": ("keel_index_chunks_embedded", "Chunks with a dense vector"),
    "rate_chunks_s": ("keel_index_embed_rate_chunks_per_second", "Dense embedding rate of the current pass"),
    "eta_s": ("keel_index_eta_seconds", "Estimated seconds until every chunk has a vector"),
    "queued": ("keel_index_queued_jobs", "Index updates waiting"),
}
SWAP_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
STEP_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200)

# vLLM's own series copied per engine (vLLM name → ours). Older vLLM calls the KV one gpu_cache_usage_perc.
VLLM_GAUGES = {
    "vllm:num_requests_running": "keel_engine_requests_running",
    "vllm:num_requests_waiting": "keel_engine_requests_waiting",
    "vllm:kv_cache_usage_perc": "keel_engine_kv_cache_usage_ratio",
    "vllm:gpu_cache_usage_perc": "keel_engine_kv_cache_usage_ratio",
}
VLLM_COUNTERS = {
    "vllm:request_success": "keel_engine_vllm_requests_finished",
    "vllm:prompt_tokens": "keel_engine_vllm_prompt_tokens",
    "vllm:generation_tokens": "keel_engine_vllm_generation_tokens",
}


def _label(value: Any) -> str:
    return "" if value is None else str(value)


class MetricsSink:
    """A RecordSink that counts each record, then hands it to the request log unchanged."""

    def __init__(self, inner: RecordSink, metrics: PlatformMetrics):
        self.inner = inner
        self.metrics = metrics

    def submit(self, record: RequestRecord) -> None:
        try:
            self.inner.submit(record)  # the log first: a metrics bug must never cost a row
        except RecordError:  # not journaled (full disk): the client gets a 503, counted as such
            self._observe(record.model_copy(update={"status_code": RecordError.status}))
            raise
        self._observe(record)

    def _observe(self, record: RequestRecord) -> None:
        try:
            self.metrics.observe(record)
        except Exception:  # pragma: no cover - defensive; counting must never fail a request
            log.exception("metrics: could not count request %s", record.request_id)

    def __getattr__(self, name: str) -> Any:  # flush(), stats() ... of the request log writer
        return getattr(self.inner, name)


@dataclass
class MetricSources:
    """The parts ``/metrics`` reads at scrape time, given when the platform is built (the indexer exists
    once the platform runs: it is read through the runtime; a part still None is left out of the scrape)."""

    db: Database
    writer: RequestLogWriter
    pool: EnginePool
    supervisor: EngineSupervisor | None = None
    swapper: Swapper | None = None
    runtime: Runtime | None = None  # the background indexer once the platform runs

    @property
    def indexer(self) -> BackgroundIndexer | None:
        return self.runtime.indexer if self.runtime is not None else None


class PlatformMetrics:
    """Everything ``/metrics`` shows for one platform."""

    def __init__(self, sources: MetricSources | None = None, engine_scrape_timeout_s: float = 1.0):
        self.sources = sources
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "keel_requests",
            "Requests by router route, checkpoint version that served them, and HTTP status",
            ["endpoint", "route", "version", "status"],
            registry=r,
        )

        def per_route(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, ["route", "version"], buckets=buckets, registry=r)

        self.ttft = per_route(
            "keel_request_ttft_seconds",
            "Time to first token (non-streaming: to the whole answer) of successful requests",
            TTFT_BUCKETS,
        )
        self.latency = per_route(
            "keel_request_duration_seconds",
            "Total request latency at the gateway, of every request",
            LATENCY_BUCKETS,
        )
        self.engine_requests = Counter(
            "keel_engine_requests",
            "Requests the gateway sent to each engine (load balance)",
            ["engine", "version"],
            registry=r,
        )
        self.tokens = Counter("keel_tokens", "Tokens through the gateway", ["kind", "version"], registry=r)
        self.scrape_timeout_s = engine_scrape_timeout_s
        self._collector = _PlatformCollector(self)
        r.register(self._collector)

    def sink(self, inner: RecordSink) -> MetricsSink:
        return MetricsSink(inner, self)

    def observe(self, rec: RequestRecord) -> None:
        version = _label(rec.checkpoint_version)
        route = _label(rec.route)
        self.requests.labels(rec.endpoint, route, version, str(rec.status_code)).inc()
        if rec.latency_ms is not None:
            self.latency.labels(route, version).observe(rec.latency_ms / 1000.0)
        if rec.status_code < 400 and rec.ttft_ms is not None:
            self.ttft.labels(route, version).observe(rec.ttft_ms / 1000.0)
        if rec.engine_url:
            self.engine_requests.labels(rec.engine_url, version).inc()
        if rec.prompt_tokens:
            self.tokens.labels("prompt", version).inc(rec.prompt_tokens)
        if rec.completion_tokens:
            self.tokens.labels("completion", version).inc(rec.completion_tokens)

    def render(self) -> bytes:
        """The text exposition (blocking: it scrapes the engines; call it in a worker thread)."""
        return generate_latest(self.registry)


class _PlatformCollector(Collector):
    """Series read from the platform's parts at scrape time."""

    def __init__(self, metrics: PlatformMetrics):
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="keel-metrics")

    def describe(self) -> Iterable[Metric]:
        return []  # dynamic: collect() is only called at scrape time

    def collect(self) -> Iterator[Metric]:
        p = self.metrics.sources
        if p is None:
            return
        parts = (
            self._requestlog,
            self._engines,
            self._swaps,
            self._cycles,
            self._canary,
            self._index,
            self._serving,
        )
        for part in parts:
            try:
                yield from part(p)
            except Exception:  # one broken part must not hide the others
                log.exception("metrics: %s failed", part.__name__)

    # -- parts -----------------------------------------------------------------------------------
    def _serving(self, p: MetricSources) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "keel_serving_version", "1 for the checkpoint version serving now", labels=["version"]
        )
        if p.pool.version is not None:
            g.add_metric([p.pool.version], 1)
        yield g
        err = GaugeMetricFamily(
            "keel_engine_error", "1 when the supervisor's last engine start or restart failed"
        )
        err.add_metric([], 1 if getattr(p.supervisor, "last_error", None) else 0)
        yield err

    def _requestlog(self, p: MetricSources) -> Iterator[Metric]:
        stats = p.writer.stats()
        g = GaugeMetricFamily("keel_requestlog_queue_depth", "Request-log rows waiting for the batch writer")
        g.add_metric([], stats.get("queued", 0))
        yield g
        yield CounterMetricFamily(
            "keel_requestlog_spilled",
            "Rows spilled to disk because the queue was full",
            value=stats.get("spilled", 0),
        )
        yield CounterMetricFamily(
            "keel_requestlog_written",
            "Rows committed to DuckDB by this process",
            value=stats.get("written", 0),
        )
        yield CounterMetricFamily(
            "keel_requestlog_unjournaled",
            "Requests answered 503 request_log_unavailable: the journal could not take their row (full disk)",
            value=stats.get("unjournaled", 0),
        )
        yield CounterMetricFamily(
            "keel_requestlog_insert_failures",
            "DuckDB inserts of request-log rows that failed (the rows are kept and retried)",
            value=stats.get("insert_failures", 0),
        )
        yield CounterMetricFamily(
            "keel_requestlog_spill_failures",
            "Rows the spill file could not take (full disk); written from the journal once DuckDB can",
            value=stats.get("spill_failures", 0),
        )
        g = GaugeMetricFamily(
            "keel_requestlog_held_rows",
            "Journaled rows waiting for DuckDB outside the queue (after a failed insert or spill)",
        )
        g.add_metric([], stats.get("held", 0))
        yield g

    def _engines(self, p: MetricSources) -> Iterator[Metric]:
        endpoints = list(p.pool.endpoints)
        healthy = GaugeMetricFamily(
            "keel_engine_healthy", "1 when the engine is in rotation", labels=["engine", "version"]
        )
        outstanding = GaugeMetricFamily(
            "keel_engine_outstanding_requests",
            "Requests the gateway has in flight on each engine",
            labels=["engine", "version"],
        )
        up = GaugeMetricFamily(
            "keel_engine_scrape_up",
            "1 when the engine's own /metrics answered this scrape",
            labels=["engine"],
        )
        gauges: dict[str, GaugeMetricFamily] = {}
        counters: dict[str, CounterMetricFamily] = {}
        scraped = list(self._pool.map(self._scrape, [e.url for e in endpoints]))
        for ep, values in zip(endpoints, scraped, strict=True):
            labels = [ep.url, ep.version]
            healthy.add_metric(labels, 1 if ep.healthy else 0)
            outstanding.add_metric(labels, ep.outstanding)
            up.add_metric([ep.url], 0 if values is None else 1)
            for name, (kind, value) in (values or {}).items():
                if kind == "gauge":
                    fam = gauges.setdefault(
                        name,
                        GaugeMetricFamily(name, f"vLLM {name} of each engine", labels=["engine", "version"]),
                    )
                else:
                    fam = counters.setdefault(
                        name,
                        CounterMetricFamily(
                            name, f"vLLM {name} of each engine", labels=["engine", "version"]
                        ),
                    )
                fam.add_metric(labels, value)
        yield healthy
        yield outstanding
        yield up
        yield from gauges.values()
        yield from counters.values()

    def _scrape(self, url: str) -> dict[str, tuple[str, float]] | None:
        """An engine's vLLM series, summed over their labels; None when it did not answer in time."""
        try:
            r = httpx.get(f"{url}/metrics", timeout=self.metrics.scrape_timeout_s)
            r.raise_for_status()
        except httpx.HTTPError:
            return None
        out: dict[str, tuple[str, float]] = {}
        try:
            for fam in text_string_to_metric_families(r.text):
                if fam.name in VLLM_GAUGES:
                    ours, kind, sample = VLLM_GAUGES[fam.name], "gauge", fam.name
                elif fam.name in VLLM_COUNTERS:
                    ours, kind, sample = VLLM_COUNTERS[fam.name], "counter", fam.name + "_total"
                else:
                    continue
                # summed over vLLM's own labels (model name, finish reason, engine index)
                out[ours] = (kind, sum(s.value for s in fam.samples if s.name == sample))
        except ValueError:
            log.warning("metrics: engine %s returned unparsable /metrics", url)
            return None
        return out

    def _swaps(self, p: MetricSources) -> Iterator[Metric]:
        rows = swaps.finished_stats(p.db)
        counts: dict[tuple[str, str, str], int] = {}
        for kind, status, strategy, _ in rows:
            counts[(kind, status, strategy)] = counts.get((kind, status, strategy), 0) + 1
        c = CounterMetricFamily(
            "keel_swaps",
            "Promotions and rollbacks, by outcome and strategy",
            labels=["kind", "status", "strategy"],
        )
        for labels, n in sorted(counts.items()):
            c.add_metric(list(labels), n)
        yield c
        # a histogram of every succeeded swap's duration, rebuilt from the registry's history (it survives
        # restarts, and swaps are rare enough that reading them per scrape costs nothing)
        h = HistogramMetricFamily(
            "keel_swap_duration_seconds", "Duration of succeeded swaps", labels=["kind", "strategy"]
        )
        by: dict[tuple[str, str], list[float]] = {}
        for kind, status, strategy, seconds in rows:
            if status == "succeeded" and seconds is not None:
                by.setdefault((kind, strategy), []).append(float(seconds))
        for (kind, strategy), values in sorted(by.items()):
            h.add_metric([kind, strategy], _buckets(values, SWAP_BUCKETS), sum(values))
        yield h
        running = GaugeMetricFamily("keel_swap_in_progress", "1 while a promotion or rollback runs")
        swapper = p.swapper
        running.add_metric([], 1 if swapper is not None and swapper.lock.locked() else 0)
        yield running

    def _cycles(self, p: MetricSources) -> Iterator[Metric]:
        c = CounterMetricFamily(
            "keel_cycles", "Flywheel cycles by status and outcome", labels=["status", "outcome"]
        )
        for status, outcome, n in cycles.outcome_counts(p.db):
            c.add_metric([status, outcome], n)
        yield c
        yield CounterMetricFamily(
            "keel_cycle_scheduled_failures",
            "Scheduled cycles that failed, including runs that could not start (alert on any rise)",
            value=cycles.scheduled_failures(p.db),
        )
        # the state now: the step a running cycle is in, else idle
        running = cycles.running_step(p.db)
        state = GaugeMetricFamily(
            "keel_cycle_state",
            "1 for what the flywheel does now: idle, or the step a running cycle is in",
            labels=["state", "step"],
        )
        if running:
            state.add_metric(["running", running[0]], 1)
        else:
            state.add_metric(["idle", ""], 1)
        yield state
        if running:
            g = GaugeMetricFamily("keel_cycle_step_running_seconds", "How long the current step has run")
            g.add_metric([], running[1])
            yield g
        last = cycles.last_finished_epoch(p.db)
        if last is not None:
            g = GaugeMetricFamily(
                "keel_cycle_last_finished_timestamp_seconds", "Unix time the last cycle ended"
            )
            g.add_metric([], last)
            yield g
        h = HistogramMetricFamily(
            "keel_cycle_step_duration_seconds",
            "Duration of finished cycle steps (step: mine, snapshot, train, evaluate, gate, promote; stage: cpt/sft/dpo)",
            labels=["step", "stage", "status"],
        )
        by: dict[tuple[str, str, str], list[float]] = {}
        for name, status, seconds in cycles.step_durations(p.db):
            step, _, stage = str(name).partition(":")
            by.setdefault((step, stage, status), []).append(max(0.0, float(seconds)))
        for labels, values in sorted(by.items()):
            h.add_metric(list(labels), _buckets(values, STEP_BUCKETS), sum(values))
        yield h

    def _canary(self, p: MetricSources) -> Iterator[Metric]:
        """The running (or last) canary: 1 while it runs, and each arm's requests and signal means at its
        last look (a request's own series already carry its version)."""
        from keel.store import canaries

        last = canaries.list_canaries(p.db, 1)
        running = GaugeMetricFamily("keel_canary_running", "1 while a canary splits traffic")
        running.add_metric([], 1 if last and last[0]["status"] == "running" else 0)
        yield running
        figures = (last[0].get("figures") or {}) if last else {}
        if not figures:
            return
        n = GaugeMetricFamily(
            "keel_canary_requests", "Requests per canary arm at its last look", labels=["arm"]
        )
        n.add_metric(["candidate"], figures.get("n_candidate") or 0)
        n.add_metric(["champion"], figures.get("n_champion") or 0)
        yield n
        g = GaugeMetricFamily(
            "keel_canary_signal",
            "Each guarded signal's mean per canary arm at its last look",
            labels=["arm", "signal"],
        )
        for s in figures.get("signals", []):
            for arm in ("candidate", "champion"):
                if s.get(arm) is not None:
                    g.add_metric([arm, s["name"]], float(s[arm]))
        yield g

    def _index(self, p: MetricSources) -> Iterator[Metric]:
        if p.indexer is None:
            return
        st = p.indexer.status()
        for key, (name, doc) in INDEX_GAUGES.items():
            if st.get(key) is not None:
                g = GaugeMetricFamily(name, doc)
                g.add_metric([], float(st[key]))
                yield g
        state = GaugeMetricFamily("keel_index_state", "1 for the indexer's current state", labels=["state"])
        for s in ("idle", "lexical", "embedding", "error"):
            state.add_metric([s], 1 if st.get("state") == s else 0)
        yield state


def _buckets(values: list[float], bounds: Iterable[float]) -> list[tuple[str, float]]:
    """Cumulative histogram buckets of ``values`` (for histograms rebuilt from recorded rows)."""
    out: list[tuple[str, float]] = [(str(float(b)), sum(v <= b for v in values)) for b in bounds]
    out.append(("+Inf", len(values)))
    return out


def parse(text: str) -> dict[str, Any]:
    """``{family name: family}`` of a text exposition (tests and the console read it this way)."""
    return {fam.name: fam for fam in text_string_to_metric_families(text)}
