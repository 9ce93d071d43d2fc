"""Watch after promotion, in the platform: compare the new champion's live requests with the previous
champion's, and roll back by itself when one signal is significantly worse (flywheel.watch decides).

Started by PromotionService after every successful live promotion (not after a rollback). One watch runs
at a time: a newer promotion supersedes the running one. Each watch is a `watches` row; an automatic
rollback is an ordinary rollback (a swaps row, the champion alias moved) whose reason starts "watch:".
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from flywheel.watch import Verdict, WatchConfig, compare
from keel.store import aliases, swaps, watches

log = logging.getLogger("keel.watch")


class PromotionWatch:
    def __init__(self, db, promotions, flush, config: WatchConfig):
        self.db, self.promotions, self.flush, self.cfg = db, promotions, flush, config
        self.task: asyncio.Task | None = None
        self.current: str | None = None  # watch id
        # a watch a dead process left running cannot finish: say so; nor can a swap it was making
        watches.interrupt_running(db)
        for swap_id in swaps.interrupt_running(db):
            log.warning("swap %s was interrupted by a restart; serving is what the registry names", swap_id)

    # ---- control -----------------------------------------------------------------------------------------
    def start(self, version: str, previous: str | None, swap_id: str | None = None) -> str | None:
        """Begin watching ``version`` (called inside the platform's event loop)."""
        if not self.cfg.enabled or previous is None:
            return None
        if self.task is not None and not self.task.done():
            self.task.cancel()
            self._finish(self.current, "superseded", f"{version} was promoted meanwhile")
        started = datetime.now(UTC)
        watch_id = watches.start(self.db, version, previous, swap_id, started)
        self.current = watch_id
        self.task = asyncio.get_running_loop().create_task(self._run(watch_id, version, previous, started))
        log.info("watching %s against %s for %.0f s (%s)", version, previous, self.cfg.window_s, watch_id)
        return watch_id

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            self._finish(self.current, "interrupted", "platform stopped")

    # ---- the watch ---------------------------------------------------------------------------------------
    async def _run(self, watch_id: str, version: str, previous: str, started: datetime) -> None:
        deadline = time.monotonic() + self.cfg.window_s
        try:
            while True:
                await asyncio.sleep(min(self.cfg.check_every_s, max(0.0, deadline - time.monotonic())))
                if aliases.get(self.db) != version:  # someone moved the champion by hand
                    self._finish(watch_id, "superseded", "the champion changed during the watch")
                    return
                verdict = await asyncio.to_thread(self.evaluate, version, previous, started)
                over = time.monotonic() >= deadline
                if verdict.worse and (self.cfg.stop_early or over):
                    await self._roll_back(watch_id, version, previous, verdict)
                    return
                if over:
                    enough = any(s.p is not None for s in verdict.signals)
                    self._finish(
                        watch_id,
                        "passed" if enough else "inconclusive",
                        verdict.reason if enough else "too few requests in the window to compare",
                        verdict,
                    )
                    return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a watch must never take the platform down
            log.exception("watch %s failed", watch_id)
            self._finish(watch_id, "failed", f"{type(e).__name__}: {e}")

    async def _roll_back(self, watch_id: str, version: str, previous: str, verdict: Verdict) -> None:
        reason = f"watch: {version} worse than {previous}: {verdict.reason}"
        log.warning("%s; rolling back", reason)
        try:
            out = await self.promotions.rollback(previous, by="watch", reason=reason)
        except Exception as e:
            self._finish(watch_id, "failed", f"rollback refused: {e}", verdict)
            return
        self._finish(watch_id, "rolled_back", reason, verdict, out.swap_id)

    def evaluate(self, version: str, previous: str, started: datetime) -> Verdict:
        self.flush()
        new = watches.version_requests(self.db, version, started)
        old = watches.version_requests(
            self.db, previous, started - timedelta(seconds=self.cfg.baseline_window_s), started
        )
        down, regen = watches.down_and_regenerated(self.db, [r["request_id"] for r in new + old])
        return compare(new, old, self.cfg, down, regen)

    def _finish(
        self,
        watch_id: str | None,
        status: str,
        reason: str,
        verdict: Verdict | None = None,
        rollback_swap: str | None = None,
    ) -> None:
        if watch_id is None:
            return
        watches.finish(
            self.db, watch_id, status, reason, verdict.to_dict() if verdict else None, rollback_swap
        )
        log.info("watch %s: %s (%s)", watch_id, status, reason)
