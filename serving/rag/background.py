"""Indexing inside the serving process: lexical at once, dense embedding slowly in the background.

Chroma is thread-safe but not process-safe, so while the platform runs it is the only writer, and every
index update (the corpus configured at start, `POST /admin/index`, `keel index` through the admin API)
goes through this one worker thread:

1. **lexical** (seconds): read, chunk and write the catalog; the retriever rebuilds BM25 from it, so
   the domain route answers from the new documents at once;
2. **dense** (minutes to hours): embed the chunks that have no vector yet, in small batches, on one
   OpenMP thread at the lowest CPU priority, pausing between batches, so the engines keep the cores.
   Whatever is embedded is persistent; after a restart the next pass starts where this one stopped.

A new request interrupts the dense pass between two batches, runs its lexical phase, and the dense
pass resumes (the catalog, not the request, says what is missing).

`on_catalog` (the retriever's BM25 rebuild) runs in this thread too: once when the thread starts (the
catalog already on disk: loading 17,645 chunks takes seconds, which must not land on a request) and
after every catalog write. `lexical_busy()` says whether such work is queued or running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path

from serving.rag.config import BackgroundIndexConfig, RagConfig
from serving.rag.embedder import limit_passage_threads
from serving.rag.eta import RateMeter
from serving.rag.indexer import Indexer, IndexSummary

log = logging.getLogger("keel.rag")


@dataclass
class IndexJob:
    paths: list[Path]
    remove: list[Path] = field(default_factory=list)
    dense: bool = True
    future: Future = field(default_factory=Future)  # the lexical phase's IndexSummary, or its error


@dataclass
class IndexStatus:
    """What `GET /admin/index` shows."""

    state: str = "idle"  # idle | lexical | embedding | error
    queued: int = 0
    chunks_total: int = 0
    chunks_embedded: int = 0
    embedding_done: int = 0  # in the current dense pass
    embedding_todo: int = 0
    rate_chunks_s: float | None = None  # over the last minutes of embedding, across passes (eta.py)
    eta_s: float | None = None  # chunks still without a vector at that rate
    last_lexical: str | None = None
    last_dense: str | None = None
    error: str | None = None
    dense_enabled: bool = True
    dense_pending: bool = False  # chunks may still lack vectors (a dense pass is due or running)
    updated_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


class BackgroundIndexer:
    def __init__(
        self,
        index_dir: Path,
        config: RagConfig,
        background: BackgroundIndexConfig | None = None,
        on_catalog: Callable[[], None] | None = None,
    ):
        self.indexer = Indexer(index_dir, config)
        self.bg = background or BackgroundIndexConfig()
        self.on_catalog = on_catalog  # called after each catalog write (the retriever rebuilds BM25)
        self._jobs: queue.Queue[IndexJob] = queue.Queue()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._status = IndexStatus(dense_enabled=self.bg.dense, dense_pending=self.bg.dense)
        # paused(): held by the worker while it writes; a pause takes it so nothing is written meanwhile
        self._pause = threading.Event()
        self._writing = threading.Lock()
        # a pass is due at start: it resumes whatever an earlier run left unembedded
        self._dense_pending = self.bg.dense
        # lexical work queued or running, the first catalog load included (see lexical_busy)
        self._busy = 1 if on_catalog is not None else 0
        self._dense_holds = 0  # dense_held() blocks open: the dense pass waits, lexical work does not
        self._meter = RateMeter()

    # -- public API ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="keel-index", daemon=True)
        self._thread.start()

    def submit(self, paths: list[Path], remove: list[Path] | None = None, dense: bool = True) -> Future:
        """Queue an update; the future resolves to the lexical phase's IndexSummary (or its InputError)."""
        job = IndexJob([Path(p) for p in paths], [Path(p) for p in remove or []], dense)
        with self._lock:
            self._busy += 1
        self._jobs.put(job)
        self._set(queued=self._jobs.qsize())
        self._wake.set()
        return job.future

    def lexical_busy(self) -> bool:
        """A lexical phase (or the first catalog load) is queued or running: the index is coming."""
        return self._busy > 0

    def _done(self) -> None:
        with self._lock:
            self._busy = max(0, self._busy - 1)

    def status(self) -> dict:
        with self._lock:
            return self._status.to_dict()

    @contextlib.contextmanager
    def paused(self, timeout: float = 600.0):
        """Nothing writes the catalog or Chroma while the block runs (`keel backup` copies the folder).
        A dense pass stops at its next batch and resumes afterwards; a lexical phase is waited for."""
        self._pause.set()
        self._wake.set()
        if not self._writing.acquire(timeout=timeout):
            self._pause.clear()
            raise TimeoutError(f"the indexer did not pause within {timeout:.0f} s")
        try:
            yield
        finally:
            self._writing.release()
            self._pause.clear()
            self._wake.set()

    @contextlib.contextmanager
    def dense_held(self):
        """No dense embedding while the block runs (a running pass stops at its next batch and resumes
        afterwards); lexical updates go on. The flywheel's training holds it: a background embedding
        thread niced inside the platform's own scheduling group would otherwise take the CPU a niced
        training child, in a group of its own, is meant to have."""
        with self._lock:
            self._dense_holds += 1
        self._wake.set()
        try:
            yield
        finally:
            with self._lock:
                self._dense_holds -= 1
            self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- worker ----------------------------------------------------------------------------------

    def _set(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self._status, k, v)
            self._status.updated_at = time.time()

    def _lower_priority(self) -> None:
        # Linux applies setpriority(PRIO_PROCESS, tid) to that one thread: serving threads keep theirs
        limit_passage_threads(self.bg.threads)
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.bg.nice)

    def _run(self) -> None:
        self._lower_priority()
        if self.on_catalog is not None:
            try:  # the catalog already on disk: build what searching it needs, here and not in a request
                self._catalog_changed()
            finally:
                self._done()
        while not self._stop.is_set():
            if self._pause.is_set():
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                job = None
            if job is not None:
                try:
                    with self._writing:
                        self._lexical(job)
                finally:
                    self._done()
                continue
            if self._dense_pending and self.bg.dense and not self._dense_holds:
                with self._writing:
                    self._dense()
                continue
            self._wake.wait(timeout=1.0)
            self._wake.clear()

    def _lexical(self, job: IndexJob) -> None:
        self._set(state="lexical", queued=self._jobs.qsize(), error=None)
        try:
            summary = self.indexer.update(job.paths, dense=False, progress=False, remove=job.remove)
        except Exception as e:  # InputError / IndexStoreError: the caller gets it, the index is untouched
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            log.error("index %s: %s", " ".join(map(str, job.paths)), msg)
            self._set(state="error", error=msg)
            job.future.set_exception(e)
            return
        line = summary.line()
        log.info("index (lexical): %s", line)
        for why in summary.skipped:
            log.warning("index: skipped %s", why)
        self._catalog_changed()  # before "idle": whoever waits on the status can search at once
        self._set(state="idle", last_lexical=line, chunks_total=summary.chunks_total)
        self._dense_pending = self.bg.dense and (self._dense_pending or job.dense)
        self._set(dense_pending=self._dense_pending)
        job.future.set_result(summary)

    def _catalog_changed(self) -> None:
        if self.on_catalog is None:
            return
        try:
            self.on_catalog()
        except Exception as e:  # searching keeps the previous catalog; the next write tries again
            log.error("index: loading the catalog for search failed: %s", e)

    def _dense(self) -> None:
        t0 = time.monotonic()
        last_log = [t0]
        last_done = [0]
        self._meter.start_pass()

        def progress(done: int, todo: int) -> None:
            self._meter.batch(done - last_done[0])
            last_done[0] = done
            rate = self._meter.rate()
            eta = self._meter.eta(todo - done)
            total = self._status.chunks_total  # the catalog's, from the last lexical phase
            embedded = max(0, total - todo + done) if total else None
            self._set(embedding_done=done, embedding_todo=todo, rate_chunks_s=rate, eta_s=eta)
            if embedded is not None:
                self._set(chunks_embedded=embedded)
            if time.monotonic() - last_log[0] >= self.bg.log_every_s:
                last_log[0] = time.monotonic()
                log.info(
                    "index (dense): %d/%d chunks embedded, %.2f chunks/s, ETA %s",
                    done,
                    todo,
                    rate or 0.0,
                    f"{eta / 60:.0f} min" if eta is not None else "?",
                )

        self._set(state="embedding", embedding_done=0, embedding_todo=0, eta_s=None)
        try:
            s: IndexSummary = self.indexer.embed_missing(
                batch=self.bg.batch,
                pause_s=self.bg.pause_s,
                should_stop=lambda: (
                    self._stop.is_set()
                    or self._pause.is_set()
                    or self._dense_holds > 0
                    or not self._jobs.empty()
                ),
                on_progress=progress,
            )
        except Exception as e:  # a broken Chroma folder: lexical keeps working, dense waits for a fix
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            log.error("index (dense): %s", msg)
            self._dense_pending = False
            self._set(state="error", error=msg, dense_pending=False)
            return
        # the search side looks at the dense collection now, before the status says the pass is done: a
        # query's own look backs off 5 s after a lexical-only look, and a pass that creates the
        # collection and finishes within those seconds (a small corpus, a fast embedder) would otherwise
        # be searched lexical-only, and say so, after the index reported itself complete
        self._catalog_changed()
        self._dense_pending = s.interrupted
        line = s.line()
        if s.chunks_missing or s.chunks_removed or s.chunks_reused:
            log.info("index (dense)%s: %s", " interrupted" if s.interrupted else "", line)
        self._set(
            state="idle",
            last_dense=line,
            chunks_total=s.chunks_total,
            chunks_embedded=s.chunks_embedded,
            dense_pending=self._dense_pending,
            eta_s=None if not s.interrupted else self._status.eta_s,
        )
