"""The canary in the platform: a candidate serves a sticky share of live traffic on its own engine beside the
champion, and flywheel.canary's sequential test decides, by itself, to stop it or to promote it.

One canary at a time, never during a swap. Start: the candidate's engine is launched (a blue/green spare:
``launch``) and its endpoints join the pool as the candidate arm (serving.engine.pool). Every
``check_every_s`` the rows each arm answered since the start, with their feedback, are tallied and
decided. ``stop``: the candidate leaves rotation at once, its engine is drained and stopped, and the
version is marked rejected with the reason. ``promote``: the candidate leaves rotation and the normal
verified swap promotes it (PromotionService, which also starts the watch after promotion: the second line
of defence). ``inconclusive``: the policy decides, and the row says so. A platform that stops mid-canary
leaves the champion serving alone and the canary ``interrupted``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flywheel.canary import CanaryConfig, CanaryTally, CanaryVerdict, decide
from keel.errors import KeelError
from keel.store import aliases, canaries, registry
from keel.store.db import Database
from serving.engine.pool import CANDIDATE, Endpoint, EnginePool

# what a hand-started canary may set for itself: how long it runs and how often it is decided
WINDOW_FIELDS = frozenset({"min_requests", "max_requests", "max_window_s", "check_every_s"})

log = logging.getLogger("keel.canary")

Launch = Callable[[str, Path], Awaitable[list[Endpoint]]]
Retire = Callable[[list[Endpoint]], Awaitable[None]]


class CanaryError(KeelError):
    """A canary that cannot start or stop now; serving is as it was."""

    status = 409
    code = "canary_refused"


class CanaryService:
    def __init__(
        self,
        db: Database,
        pool: EnginePool,
        promotions,
        cfg: CanaryConfig,
        launch: Launch | None,
        retire: Retire,
        flush: Callable[[], None] = lambda: None,
        swapping: Callable[[], bool] = lambda: False,
    ):
        self.db, self.pool, self.promotions, self.cfg = db, pool, promotions, cfg
        self.launch, self.retire, self.flush, self.swapping = launch, retire, flush, swapping
        self.run_cfg = cfg  # the running canary's policy: the platform's, with its window overrides
        self.task: asyncio.Task | None = None
        self.current: dict[str, Any] | None = None  # the running canary's row
        self.done = asyncio.Event()
        canaries.interrupt_running(db)

    # ---- control ------------------------------------------------------------------------------------------
    async def start(
        self,
        version: str,
        share: float | None = None,
        *,
        force: bool = False,
        by: str = "unknown",
        cycle_id: str | None = None,
        window: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``window`` overrides this canary's min_requests/max_requests/max_window_s (the rest of the
        policy stays the platform's, so its alpha and guarded signals are the ones reviewed)."""
        share = self.cfg.share if share is None else share
        unknown = set(window or {}) - WINDOW_FIELDS
        if unknown:
            raise CanaryError(f"only {sorted(WINDOW_FIELDS)} can be set per canary, not {sorted(unknown)}")
        try:
            cfg = CanaryConfig.model_validate(
                {**self.cfg.model_dump(), **{k: v for k, v in (window or {}).items() if v is not None}}
            )
        except ValidationError as e:  # one line: the first field and why
            first = e.errors()[0]
            raise CanaryError(f"canary window: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        if not 0 < share < 1:
            raise CanaryError(f"share must be between 0 and 1 (exclusive), not {share}")
        if self.running():
            raise CanaryError(f"a canary of {self.current['version']} is running; stop it first")  # type: ignore[index]
        if self.swapping():
            raise CanaryError("a swap is in progress; start the canary after it")
        if self.launch is None:
            raise CanaryError("no engine can be started here for a canary (external engines: add one by URL)")
        try:
            cp = registry.get(self.db, version)
        except registry.RegistryError as e:
            raise CanaryError(str(e)) from e
        champion = aliases.get(self.db)
        if version == champion:
            raise CanaryError(f"{version} is already serving")
        if cp.status == "rejected" and not force:
            raise CanaryError(f"{version} was rejected (failed its gates); use --force to canary it anyway")
        endpoints = await self.launch(version, Path(cp.path))
        self.run_cfg = cfg
        started = datetime.now(UTC)  # the arms are compared from here on
        self.pool.start_canary(endpoints, share)
        canary_id = canaries.start(self.db, version, champion, share, by, cycle_id)
        self.current = canaries.get(self.db, canary_id)
        self.done = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(canary_id, version, champion, started))
        log.info(
            "canary %s: %s on %.0f%% of conversations beside %s", canary_id, version, share * 100, champion
        )
        return self.current  # type: ignore[return-value]

    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self, by: str = "unknown", reason: str | None = None) -> dict[str, Any]:
        if not self.running() or self.current is None:
            raise CanaryError("no canary is running")
        cid = self.current["canary_id"]
        self.task.cancel()  # type: ignore[union-attr]
        await self._end(cid, "stopped", reason or f"stopped by {by}")
        return canaries.get(self.db, cid)  # type: ignore[return-value]

    async def close(self) -> None:
        """Platform shutdown: the champion serves alone; the canary is recorded as interrupted."""
        if self.running() and self.current is not None:
            self.task.cancel()  # type: ignore[union-attr]
            await self._end(self.current["canary_id"], "interrupted", "the platform stopped")

    def status(self) -> dict[str, Any]:
        rows = canaries.list_canaries(self.db, 1)
        return {
            "running": self.running(),
            "canary": rows[0] if rows else None,
            "config": (self.run_cfg if self.running() else self.cfg).model_dump(),
        }

    # ---- the decision loop --------------------------------------------------------------------------------
    async def _run(self, canary_id: str, version: str, champion: str | None, started: datetime) -> None:
        t0 = time.monotonic()
        try:
            while True:
                await asyncio.sleep(self.run_cfg.check_every_s)
                verdict = await asyncio.to_thread(
                    self.evaluate, version, champion, started, time.monotonic() - t0
                )
                canaries.update(self.db, canary_id, verdict.to_dict())
                if verdict.outcome == "continue":
                    continue
                await self._decided(canary_id, version, verdict)
                return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a canary must never take the platform down: the champion serves alone
            log.exception("canary %s failed", canary_id)
            await self._end(canary_id, "failed", f"{type(e).__name__}: {e}")

    def evaluate(
        self, version: str, champion: str | None, since: datetime, elapsed_s: float
    ) -> CanaryVerdict:
        self.flush()
        tally = CanaryTally()
        for row in canaries.arm_rows(self.db, since, (version, champion or "")):
            tally.add("candidate" if row["arm"] == CANDIDATE else "champion", row)
        return decide(tally, self.run_cfg, elapsed_s)

    async def _decided(self, canary_id: str, version: str, verdict: CanaryVerdict) -> None:
        figures = verdict.to_dict()
        promote = verdict.outcome == "promote" or (
            verdict.outcome == "inconclusive" and self.run_cfg.on_inconclusive == "promote"
        )
        if not promote:
            status = "rejected" if verdict.outcome == "stop" else "inconclusive"
            await self._end(canary_id, status, verdict.reason, figures)
            registry.set_status(self.db, version, "rejected")
            log.warning("canary %s: %s %s: %s", canary_id, version, status, verdict.reason)
            return
        await self._end(canary_id, "promoted", verdict.reason, figures, keep_open=True)
        try:
            await self.promotions.promote(
                version, by="canary", reason=f"canary {canary_id}: {verdict.reason}"
            )
        except Exception as e:
            canaries.promotion_refused(self.db, canary_id, f"{verdict.reason}; promotion refused: {e}")
            self.current = canaries.get(self.db, canary_id)
            log.error("canary %s: promotion of %s refused: %s", canary_id, version, e)
        finally:
            self.done.set()

    async def _end(
        self,
        canary_id: str,
        status: str,
        reason: str,
        figures: dict[str, Any] | None = None,
        keep_open: bool = False,
    ) -> None:
        """The candidate leaves rotation (at once: new requests go to the champion), then drains and stops."""
        endpoints = self.pool.stop_canary()
        canaries.finish(self.db, canary_id, status, reason, figures)
        self.current = canaries.get(self.db, canary_id)
        try:
            await self.retire(endpoints)
        finally:
            if not keep_open:
                self.done.set()
