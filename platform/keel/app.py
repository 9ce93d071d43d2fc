"""App composition: the one platform process (gateway, admin API, request log writer, engine supervisor)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import httpx
from fastapi import FastAPI

from keel.api.errors import install_error_handlers
from keel.checkpoints.basemodel import ensure_base
from keel.checkpoints.canary import CanaryService
from keel.checkpoints.fingerprints import FingerprintBook, FingerprintUnavailable
from keel.checkpoints.promotion import PromotionService
from keel.config import DEMO_CORPUS, KeelSettings
from keel.cycle.service import CycleService
from keel.metrics import MetricSources, PlatformMetrics
from keel.review.candidates import CandidateSampler
from keel.runtime import Runtime
from keel.store import registry
from keel.store.db import Database
from keel.store.feedback import DuckFeedbackStore
from keel.store.keys import KeyStore
from keel.store.permissions import secure_data_dir
from keel.store.requestlog import RequestLogWriter
from keelcommon.files import write_json_atomic
from serving.engine.client import EngineClient
from serving.engine.pool import Endpoint, EnginePool
from serving.engine.supervisor import EngineSupervisor
from serving.engine.swap import SwapError, Swapper
from serving.feedback.service import FeedbackService
from serving.gateway.api import install_error_handlers as install_gateway_errors
from serving.gateway.chat import ChatService

log = logging.getLogger("keel")


def _admin_key(run_dir: Path) -> str:
    """A per-data-dir admin secret for the CLI, readable only by its owner."""
    path = run_dir / "admin.key"
    run_dir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_text().strip()
    key = "sk-keel-admin-" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


class NoWriter:
    """Offline (no platform running): no request-log writer holds unflushed rows."""

    def flush(self) -> None:
        pass


class Platform:
    """Everything the platform process owns, each part made once by ``build_platform`` and handed in.

    ``start`` brings up what needs the running event loop, the engines or the index on disk (engines, the
    intent router, the gateway, the background indexer, the schedule) into ``runtime``; ``stop`` ends it.
    Offline (``live=False``: the CLI with no platform running) there are no engines and no runtime, and
    only the admin routers are served over the same parts.
    """

    def __init__(
        self,
        settings: KeelSettings,
        *,
        db: Database,
        keys: KeyStore,
        admin_key: str,
        writer: RequestLogWriter | NoWriter,
        promotions: PromotionService,
        cycles: CycleService,
        runtime: Runtime | None = None,
        pool: EnginePool | None = None,
        supervisor: EngineSupervisor | None = None,
        client: httpx.AsyncClient | None = None,
        swapper: Swapper | None = None,
        fingerprints: FingerprintBook | None = None,
        feedback: FeedbackService | None = None,
        metrics: PlatformMetrics | None = None,
        candidates: CandidateSampler | None = None,
        canary: CanaryService | None = None,
    ):
        self.settings = settings
        self.db, self.keys, self.admin_key, self.writer = db, keys, admin_key, writer
        self.promotions, self.cycles, self.runtime = promotions, cycles, runtime
        self.pool, self.supervisor, self.client, self.swapper = pool, supervisor, client, swapper
        self.fingerprints, self.feedback, self.metrics, self.candidates = (
            fingerprints,
            feedback,
            metrics,
            candidates,
        )
        self.canary = canary  # None offline: a canary needs engines
        self.chat: ChatService | None = None  # the gateway, made at start: its router hook needs the index
        self.replayed = 0
        self._stopped = False

    @property
    def live(self) -> bool:
        return self.runtime is not None

    @property
    def router(self):
        return self.runtime.router if self.runtime is not None else None

    @property
    def indexer(self):
        return self.runtime.indexer if self.runtime is not None else None

    async def start(self) -> None:
        s = self.settings
        assert self.runtime is not None and self.metrics is not None, "an offline platform does not start"
        self.runtime.loop = asyncio.get_running_loop()
        self.replayed = self.writer.start()  # type: ignore[union-attr]
        if self.replayed:
            log.warning("replayed %d journaled request rows", self.replayed)
        from serving.router.hook import gateway_router

        self.runtime.router = await self._router()
        self.chat = ChatService(
            # every record passes the metrics on its way to the request log
            self.pool,
            self.metrics.sink(self.writer),
            self.keys,
            s.gateway,
            self.client,
            router=gateway_router(self.runtime.router) if self.runtime.router is not None else None,
        )
        await self.start_engines()
        # after the engines: their start-up needs both cores more than BM25 does, and a failed start
        # leaves the index alone
        self._start_indexer()
        self.candidates.start(self.engine_client())  # type: ignore[union-attr]
        self.cycles.recover()  # a cycle a dead process left is interrupted (and its orphan child ended)
        self.cycles.scheduler.start()

    async def _router(self):
        """The intent router (classify → retrieve → prompt); None when disabled."""
        s = self.settings
        if not s.router.enabled:
            return None
        from serving.router.hook import engine_generate
        from serving.router.service import build_router

        # loads the embedder, embeds the intent examples and builds BM25 over what is indexed so far
        gen = engine_generate(self.engine_client(), s.gateway.request_timeout_s)
        # (gen only serves router.classifier=llm; answers are generated by the gateway itself)
        from keel.cycle.router_fit import serving_model_file

        # a refitted router model (keel router train, the cycle) serves from the next start on
        rcfg = s.router.model_copy(update={"model_file": serving_model_file(s)})
        router = await asyncio.to_thread(build_router, rcfg, s.rag, s.rag_index_dir, None, gen)
        await asyncio.to_thread(router.warmup)
        return router

    def engine_client(self) -> EngineClient:
        """The engines through the pool (lease, timeout, retry rule) for callers beside the gateway."""
        assert self.client is not None, "the HTTP client exists once start() began"
        s = self.settings
        return EngineClient(self.pool, self.client, s.gateway.served_model_name, s.gateway.request_timeout_s)

    def _start_indexer(self) -> None:
        """The only writer of the document index while the platform runs (Chroma is not process-safe):
        the configured corpus is indexed now, lexical in seconds, dense in the background."""
        from serving.rag.background import BackgroundIndexer

        s = self.settings
        retriever = getattr(self.router, "retriever", None)
        # `is not None`: a Retriever has a length, so an empty one is falsy
        reload = (lambda: retriever.refresh(wait=True)) if retriever is not None else None
        indexer = BackgroundIndexer(s.rag_index_dir, s.rag, s.rag.background, on_catalog=reload)
        self.runtime.indexer = indexer  # type: ignore[union-attr]
        if retriever is not None:
            # the indexer loads the catalog (BM25 over ~17,600 chunks: seconds) in its own thread, at
            # start and after each write; a request never pays for it and says "loading" until it is done
            retriever.refresh_on_search = False
            retriever.index_busy = indexer.lexical_busy
        indexer.start()
        if paths := s.rag_corpus_paths:
            log.info("indexing %s in the background", ", ".join(map(str, paths)))
            indexer.submit(paths)
        elif s.rag.corpus_paths is None:
            # Unset and no demo corpus beside this checkout: say so, or domain answers silently lack sources.
            log.warning(
                "nothing to index at start-up: rag.corpus_paths is unset and the demo corpus %s is not there; "
                "domain answers cite only documents already indexed (`keel index PATH` adds some)",
                DEMO_CORPUS,
            )

    async def start_engines(self) -> None:
        s = self.settings
        base_dir = await asyncio.to_thread(ensure_base, s.checkpoints_dir, s.model.path)
        registry.ensure_base_registered(self.db, base_dir)
        version, model_dir = registry.serving(self.db) or ("base", base_dir)
        # the reference answers (computed once per checkpoint) while the engine starts
        fingerprint = asyncio.create_task(self.fingerprints.aensure(version, Path(model_dir)))
        try:
            if s.engine.external_urls:
                self.pool.endpoints = [
                    Endpoint(url=u.rstrip("/"), version=version, model_dir=str(model_dir))
                    for u in s.engine.external_urls
                ]
            else:
                self.pool.endpoints = await self.supervisor.start_version(version, model_dir)
        except BaseException:
            fingerprint.cancel()
            raise
        await self._verify_engines(fingerprint)
        if not s.engine.external_urls:
            self.supervisor.start_monitor()

    async def _verify_engines(self, fingerprint: asyncio.Task) -> None:
        """An engine that does not answer the serving version's probes leaves rotation (wrong weights)."""
        try:
            fp = await fingerprint
        except FingerprintUnavailable as e:
            log.error("the engines' weights cannot be verified: %s", e)
            return
        if fp is None or self.swapper is None:
            return
        for ep in self.pool.endpoints:
            try:
                await self.swapper.verify_endpoint(ep, fp)
            except SwapError as e:
                ep.healthy = False
                self.supervisor.last_error = str(e)
                log.error("engine %s left rotation: %s", ep.url, e)

    def write_run_file(self) -> None:
        s = self.settings
        info = {"pid": os.getpid(), "url": f"http://{s.gateway.host}:{s.gateway.port}"}
        write_json_atomic(s.run_dir / "platform.json", info, indent=None)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.live:
            (self.settings.run_dir / "platform.json").unlink(missing_ok=True)
            self.cycles.scheduler.stop()
            # a running cycle: its child is killed, the cycle recorded as interrupted
            await asyncio.to_thread(self.cycles.stop)
            await self.candidates.stop()  # type: ignore[union-attr]
            await self.canary.close()  # type: ignore[union-attr]  # the champion serves alone
            if self.router is not None:
                self.router.close()
            if self.indexer is not None:
                await asyncio.to_thread(self.indexer.stop)
            await self.supervisor.stop_all()  # type: ignore[union-attr]
            await self.client.aclose()  # type: ignore[union-attr]
            await asyncio.to_thread(self.writer.close)  # type: ignore[union-attr]
        self.db.close()

    def close(self) -> None:
        """Offline: release the database file."""
        self.db.close()


def _http_client(s: KeelSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        # Drop pooled engine connections before vLLM's own 5 s idle close, so a request never goes out on a
        # connection the engine is closing (managed engines also get a longer one, see process.py).
        limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256, keepalive_expiry=3.0),
        timeout=httpx.Timeout(s.gateway.request_timeout_s, connect=10.0),
    )


def build_platform(settings: KeelSettings, mode: Literal["live", "offline"] = "live") -> Platform:
    """The one assembly: every part made once, each given the parts and the typed config section it uses.

    ``live``: what ``keel up`` serves (``start`` brings up the engines). ``offline``: the CLI with no
    platform running serves the same admin routers over the database file; promotion then moves only the
    registry, and nothing is watched or scheduled.
    """
    s = settings
    secure_data_dir(s.data_dir)  # owner-only from here on (umask 077), and what exists tightened
    db = Database(s.db_path)
    keys = KeyStore(db)
    if mode == "offline":
        promotions = PromotionService(db, None)
        cycles = CycleService(s, db, promotions)
        cycles.recover()
        local_key = "sk-keel-local-" + secrets.token_urlsafe(16)
        return Platform(
            s, db=db, keys=keys, admin_key=local_key, writer=NoWriter(), promotions=promotions, cycles=cycles
        )
    runtime = Runtime()
    writer = RequestLogWriter(db, s.journal_dir, s.requestlog)
    pool = EnginePool()
    supervisor = EngineSupervisor(s.engine, s.gateway.served_model_name, s.data_dir / "logs", pool)
    client = _http_client(s)
    managed = None if s.engine.external_urls else supervisor
    swapper = Swapper(pool, managed, client, s.gateway.served_model_name, s.swap)
    fingerprints = FingerprintBook(db, s.engine.dtype, s.swap.verify)
    promotions = PromotionService(db, swapper, fingerprints, s.watch, writer.flush)
    sources = MetricSources(db, writer, pool, supervisor, swapper, runtime)

    async def launch(version: str, path: Path) -> list[Endpoint]:  # a blue/green spare for the candidate
        return await supervisor.start_version(version, path, replicas=1)

    async def retire(endpoints: list[Endpoint]) -> None:
        for ep in endpoints:
            await pool.drain(ep, s.swap.drain_timeout_s)
            await supervisor.stop_endpoint(ep)

    canary = CanaryService(
        db,
        pool,
        promotions,
        s.cycle.canary,
        None if s.engine.external_urls else launch,
        retire,
        writer.flush,
        swapping=swapper.lock.locked,
    )
    return Platform(
        s,
        db=db,
        keys=keys,
        admin_key=_admin_key(s.run_dir),
        writer=writer,
        promotions=promotions,
        cycles=CycleService(s, db, promotions, flush=writer.flush, runtime=runtime, canary=canary),
        runtime=runtime,
        pool=pool,
        supervisor=supervisor,
        client=client,
        swapper=swapper,
        fingerprints=fingerprints,
        feedback=FeedbackService(
            keys, DuckFeedbackStore(db, writer.flush), s.gateway.max_body_bytes, s.gateway.body_timeout_s
        ),
        metrics=PlatformMetrics(sources, s.metrics.engine_scrape_timeout_s),
        candidates=CandidateSampler(db, pool, s.annotation),
        canary=canary,
    )


def admin_routers() -> list:
    """The admin API's routers: what the CLI calls, served by the platform or in-process (cli/client.py)."""
    from keel.api import backup, canary, checkpoints, cycles, evals, flywheel, keys, requests

    return [area.router for area in (keys, requests, checkpoints, evals, flywheel, backup, cycles, canary)]


def create_admin_app(platform) -> FastAPI:
    """Only the admin API, over whatever holds the database (``platform.db``): the CLI's local path."""
    app = FastAPI(title="Keel admin", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.platform = platform
    install_error_handlers(app)
    for router in admin_routers():
        app.include_router(router)
    return app


def create_app(platform: Platform) -> FastAPI:
    from keel.api import index, metrics
    from keel.api.limits import AdminBodyLimit
    from keel.web.annotation import router as annotation_router
    from keel.web.console import router as console_router
    from keel.web.pages import SecurityHeaders, mount_static
    from serving.feedback.api import router as feedback_router
    from serving.gateway.api import router as gateway_router

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        platform.write_run_file()
        try:
            yield
        finally:
            await platform.stop()

    # no /docs, /redoc or /openapi.json: the schema lists every admin route to anyone who asks
    app = FastAPI(title="Keel", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.platform = platform
    app.state.pool = platform.pool
    app.state.chat = platform.chat
    app.state.feedback = platform.feedback
    install_error_handlers(app)
    install_gateway_errors(app)  # 404/405 under /v1: OpenAI's shape, x-request-id, a log row

    app.include_router(gateway_router)
    app.include_router(feedback_router)
    for router in [*admin_routers(), index.router, metrics.router]:
        app.include_router(router)
    app.include_router(annotation_router)
    app.include_router(console_router)
    mount_static(app)
    # outermost last: a 413 from the body limit gets the security headers too
    app.add_middleware(AdminBodyLimit)
    app.add_middleware(SecurityHeaders)
    return app
