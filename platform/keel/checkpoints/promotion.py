"""Promote and roll back: checks, one swap at a time, and a history row for every attempt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.watch import WatchConfig
from keel.checkpoints.fingerprints import FingerprintBook, FingerprintUnavailable
from keel.errors import KeelError
from keel.store import aliases, registry, swaps
from keel.store.db import Database
from serving.engine.compat import NotServableError, check_servable
from serving.engine.swap import SwapError, Swapper

if TYPE_CHECKING:
    from keel.checkpoints.watch import PromotionWatch


class PromotionError(KeelError, RuntimeError):
    """Refused or failed; serving is untouched. One line."""

    status = 409
    code = "promotion_refused"


@dataclass
class Outcome:
    swap_id: str
    kind: str
    from_version: str | None
    to_version: str
    strategy: str
    seconds: float
    held_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class PromotionService:
    """Used by the admin API (platform running) and by the CLI directly (platform stopped: swapper=None)."""

    def __init__(
        self,
        db: Database,
        swapper: Swapper | None,
        fingerprints: FingerprintBook | None = None,
        watch: WatchConfig | None = None,
        flush: Callable[[], None] | None = None,
    ):
        self.db = db
        self.swapper = swapper
        # the new weights must answer the checkpoint's probes before they serve (None: not verified)
        self.fingerprints = fingerprints
        self._busy = False  # from the first check to the history row: a second swap is refused meanwhile
        # live promotions are watched and rolled back when worse (checkpoints/watch.py); the watch calls
        # back into this service, so the service makes it (none offline: nothing serves to compare)
        self.watcher: PromotionWatch | None = None
        if watch is not None and swapper is not None:
            from keel.checkpoints.watch import PromotionWatch

            self.watcher = PromotionWatch(db, self, flush or (lambda: None), watch)

    def current(self) -> str | None:
        """The champion: the alias promotion and rollback move (it starts at what the registry serves)."""
        return aliases.get(self.db, aliases.CHAMPION)

    def _moved(self, kind: str, version: str, by: str, reason: str | None, swap_id: str) -> None:
        registry.mark_serving(self.db, version, by, rollback=kind == "rollback")
        aliases.move(self.db, aliases.CHAMPION, version, kind, by, reason, swap_id)

    def _target(self, version: str) -> tuple[registry.Checkpoint, str | None]:
        """The registered checkpoint to swap to and the current champion; refused when it already serves."""
        try:
            cp = registry.get(self.db, version)
        except registry.RegistryError as e:
            raise PromotionError(str(e)) from e
        current = self.current()
        if version == current:
            raise PromotionError(f"{version} is already serving")
        return cp, current

    async def promote(
        self, version: str, *, force: bool = False, by: str = "unknown", reason: str | None = None
    ) -> Outcome:
        cp, current = self._target(version)
        if cp.status == "rejected" and not force:
            raise PromotionError(f"{version} was rejected; use --force to promote it anyway (recorded)")
        if cp.gate_passed is False and not force:
            raise PromotionError(f"{version} failed its gates; use --force to promote it anyway (recorded)")
        return await self._swap("promote", cp, current, force, by, reason)

    def previous(self) -> str:
        """The version that served before the current one."""
        current = self.current()
        frm = swaps.predecessor(self.db, current)
        if frm is None:
            raise PromotionError(f"nothing to roll back to: {current} has no recorded predecessor")
        return frm

    async def rollback(
        self, to: str | None = None, *, by: str = "unknown", reason: str | None = None
    ) -> Outcome:
        cp, current = self._target(to or self.previous())
        return await self._swap("rollback", cp, current, False, by, reason)

    async def _swap(
        self,
        kind: str,
        cp: registry.Checkpoint,
        current: str | None,
        force: bool,
        by: str,
        reason: str | None,
    ) -> Outcome:
        path = Path(cp.path)
        try:
            check_servable(path)
        except NotServableError as e:
            raise PromotionError(str(e)) from e
        if self._busy or (self.swapper is not None and self.swapper.lock.locked()):
            raise PromotionError("another swap is running; try again when it has finished")
        self._busy = True
        try:
            return await self._swap_recorded(kind, cp, path, current, force, by, reason)
        finally:
            self._busy = False

    async def _swap_recorded(
        self,
        kind: str,
        cp: registry.Checkpoint,
        path: Path,
        current: str | None,
        force: bool,
        by: str,
        reason: str | None,
    ) -> Outcome:
        swap_id = swaps.start(self.db, kind, current, cp.version, force, by, reason)
        if self.swapper is None:  # platform not running: the next `keel up` serves it (and verifies it)
            self._moved(kind, cp.version, by, reason, swap_id)
            swaps.finish(self.db, swap_id, "succeeded", "offline", 0.0, 0.0)
            return Outcome(swap_id, kind, current, cp.version, "offline", 0.0, 0.0)
        try:
            fp = await self.fingerprints.aensure(cp.version, path) if self.fingerprints else None
        except FingerprintUnavailable as e:
            swaps.finish(self.db, swap_id, "failed", None, None, None, reason=f"failed: {e}")
            raise PromotionError(f"{kind} to {cp.version} refused, still serving {current}: {e}") from e
        try:
            result = await self.swapper.swap(cp.version, path, fingerprint=fp)
        except SwapError as e:
            swaps.finish(self.db, swap_id, "failed", None, None, None, reason=f"failed: {e}")
            raise PromotionError(f"{kind} to {cp.version} failed, still serving {current}: {e}") from e
        except BaseException as e:
            swaps.finish(
                self.db, swap_id, "failed", None, None, None, reason=f"failed: {type(e).__name__}: {e}"
            )
            raise
        self._moved(kind, cp.version, by, reason, swap_id)
        swaps.finish(self.db, swap_id, "succeeded", result.strategy, result.seconds, result.held_s)
        if kind == "promote" and self.watcher is not None:
            self.watcher.start(cp.version, current, swap_id)
        return Outcome(swap_id, kind, current, cp.version, result.strategy, result.seconds, result.held_s)

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        return swaps.history(self.db, limit)
