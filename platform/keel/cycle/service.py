"""One code path for every way a cycle starts: `keel cycle run`, `POST /admin/cycles` and the scheduler.

The service owns the runner (flywheel/cycle.py) over the DuckDB store and the platform's steps. A cycle
runs in its own thread (training and eval are child processes it waits on), so the event loop keeps
serving. ``attach`` wires it into the running platform (recovery of a cycle a dead process left, the
scheduler); the CLI without a platform gets one over the database file through the admin API in-process.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from flywheel.cycle import CycleError, CycleRecord, CycleRunner, UnknownCycle
from flywheel.cycle_config import CycleConfig
from keel.cycle.launcher import end_orphan
from keel.cycle.scheduler import CycleScheduler
from keel.cycle.steps import PlatformSteps
from keel.runtime import Runtime
from keel.store.cycles import DuckCycleStore

if TYPE_CHECKING:
    from keel.config import KeelSettings


log = logging.getLogger("keel.cycle")

PROFILES = Path(__file__).with_name("profiles")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


MAX_PROFILE_BYTES = 1 << 20


def profile_path(name: str, data_dir: Path | None = None) -> Path:
    """A shipped profile name (platform/keel/cycle/profiles/<name>.yaml), or a YAML file inside the
    shipped folder or the data dir (relative: to the data dir). A profile can set how the cycle launches
    its children (``launcher.kind: command``), so one from anywhere else on the host is refused."""
    shipped = {q.stem: q for q in PROFILES.glob("*.yaml")}
    names = ", ".join(sorted(shipped))
    if name in shipped:
        return shipped[name]
    if not name or len(name) > 1024 or "\x00" in name:
        raise CycleError(
            f"invalid profile name {name[:80]!r} (shipped: {names}; or a YAML file in the data dir)"
        )
    roots = [PROFILES.resolve(), *([Path(data_dir).expanduser().resolve()] if data_dir is not None else [])]
    p = Path(name).expanduser()
    if p.suffix not in (".yaml", ".yml"):
        raise CycleError(
            f"unknown profile {name!r} (shipped: {names}; or a path to a YAML file in the data dir)"
        )
    try:
        p = (roots[-1] / p).resolve()  # an absolute path replaces the root
        found = p.is_file()
    except (OSError, RuntimeError) as e:
        raise CycleError(f"profile {name[:200]!r}: {getattr(e, 'strerror', None) or e}") from None
    if not any(p.is_relative_to(root) for root in roots):
        raise CycleError(f"profile {p}: profiles are read only from {' or '.join(map(str, roots))}")
    if not found:
        raise CycleError(f"profile {p}: no such file" + (" (it is a folder)" if p.is_dir() else ""))
    return p


def load_profile(base: CycleConfig, name: str, data_dir: Path | None = None) -> CycleConfig:
    """``base`` with the profile's ``cycle:`` mapping laid over it (paths relative to the repo root)."""
    path = profile_path(name, data_dir)
    try:
        raw = path.read_bytes()[: MAX_PROFILE_BYTES + 1]
        if len(raw) > MAX_PROFILE_BYTES:
            raise CycleError(f"profile {path}: larger than {MAX_PROFILE_BYTES} bytes")
        data = yaml.safe_load(raw.decode("utf-8")) or {}
    except OSError as e:
        raise CycleError(f"profile {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise CycleError(f"profile {path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise CycleError(f"profile {path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise CycleError(
            f"profile {path}: expected a mapping (`cycle:` and its keys), not a {type(data).__name__}"
        )
    section = data.get("cycle", data)
    if not isinstance(section, dict):
        raise CycleError(f"profile {path}: expected a `cycle:` mapping")
    merged = _merge(base.model_dump(), {**section, "profile": section.get("profile") or path.stem})
    try:
        return CycleConfig.model_validate(merged)
    except ValueError as e:
        first = str(e).splitlines()
        raise CycleError(f"profile {path}: " + " ".join(first[1:3]).strip()) from None


class CycleService:
    def __init__(
        self, settings: KeelSettings, db, promotions, flush=None, runtime: Runtime | None = None, canary=None
    ):
        self.settings = settings
        self.store = DuckCycleStore(db)
        self.steps = PlatformSteps(
            settings, db, promotions, self.store, flush=flush, runtime=runtime, canary=canary
        )
        self.runner = CycleRunner(self.store, self.steps)
        self.threads: dict[str, threading.Thread] = {}
        # the nightly schedule; it runs only while a platform does (started by Platform.start)
        self.scheduler = CycleScheduler(self, settings.cycle.schedule, settings.data_dir)

    @property
    def base_config(self) -> CycleConfig:
        return self.settings.cycle

    # ---- lifecycle -------------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """A cycle left running by a process that died is interrupted; its orphaned children are ended."""
        ids = self.runner.recover()
        for cid in ids:
            d = self.settings.data_dir / "cycles" / cid
            for pidfile in d.glob("*.pid") if d.is_dir() else []:
                if end_orphan(pidfile):
                    log.warning("cycle %s: ended the orphaned child of %s", cid, pidfile.stem)
            log.warning(
                "cycle %s was interrupted by a restart: `keel cycle resume %s` continues it", cid, cid
            )
        return ids

    def stop(self, timeout_s: float = 60.0) -> None:
        """Platform shutdown: the running cycle's child is killed and the cycle recorded as interrupted."""
        for cid, t in list(self.threads.items()):
            if t.is_alive():
                self.runner.interrupt(cid)
                t.join(timeout_s)

    # ---- start -----------------------------------------------------------------------------------------
    def config(self, profile: str | None = None) -> CycleConfig:
        cfg = self.base_config
        name = profile or cfg.profile
        return load_profile(cfg, name, self.settings.data_dir) if name and profile else cfg

    def start(
        self,
        trigger: str,
        stages: list[str] | None = None,
        dry_run: bool = False,
        profile: str | None = None,
        wait: bool = False,
    ) -> CycleRecord:
        """Begin a cycle (or continue an interrupted one) in a thread; CycleBusy if one runs."""
        cycle = self.runner.begin(self.config(profile), trigger, stages=stages, dry_run=dry_run)
        return self._launch(cycle, wait)

    def resume(self, cycle_id: str, wait: bool = False) -> CycleRecord:
        return self._launch(self.runner.reopen(cycle_id), wait)

    def _launch(self, cycle: CycleRecord, wait: bool) -> CycleRecord:
        cid = cycle.cycle_id
        t = threading.Thread(target=self._execute, args=(cid,), name=f"cycle-{cid}", daemon=True)
        self.threads[cid] = t
        t.start()
        if wait:
            t.join()
        return self.store.get(cid) or cycle

    def _execute(self, cycle_id: str) -> None:
        try:
            c = self.runner.execute(cycle_id)
            log.info("cycle %s %s (%s)%s", cycle_id, c.status, c.outcome, f": {c.error}" if c.error else "")
        except Exception as e:  # never lost silently: the cycle row says failed, the log has the traceback
            log.exception("cycle %s crashed", cycle_id)
            self._mark_failed(cycle_id, f"{type(e).__name__}: {e}")
        finally:
            self.threads.pop(cycle_id, None)

    def _mark_failed(self, cycle_id: str, error: str) -> None:
        """The runner itself raised (its own bookkeeping, not a step): a row left `running` would read as a
        live cycle until the next restart and refuse every later one."""
        try:
            c = self.store.get(cycle_id)
            if c is not None and c.status == "running":
                c.status, c.error, c.finished_at = "failed", error, self.runner.clock()
                self.store.update(c)
        except Exception:
            log.exception("cycle %s: could not record its failure", cycle_id)

    def record_failure(self, trigger: str, error: str) -> CycleRecord:
        """A cycle that could not even begin (the scheduler's run: a broken profile, no serving model, a
        store error) as a failed row with its error, so it shows where cycles show and in /metrics."""
        cfg = self.base_config
        now = self.runner.clock()
        c = CycleRecord(
            cycle_id=self.runner.new_id(),
            status="failed",
            trigger=trigger,
            stages=list(cfg.stages),
            dry_run=False,
            config=cfg.model_dump(mode="json"),
            error=f"could not start: {error}",
            started_at=now,
            finished_at=now,
        )
        self.store.create(c)
        return c

    def cancel(self, cycle_id: str) -> CycleRecord:
        self.runner.cancel(cycle_id)
        t = self.threads.get(cycle_id)
        if t is not None:
            t.join(60)  # the child's group is killed within its grace period
        return self.store.get(cycle_id)  # type: ignore[return-value]

    # ---- reads -----------------------------------------------------------------------------------------
    def show(self, cycle_id: str) -> dict[str, Any]:
        c = self.store.get(cycle_id)
        if c is None:
            raise UnknownCycle(f"unknown cycle {cycle_id!r} (see `keel cycle list`)")
        steps = []
        for s in self.store.steps(cycle_id):
            d = s.to_dict()
            if s.status == "running" and c.status == "running":
                d["progress"] = self.steps.progress(cycle_id, s.name)
            steps.append(d)
        return {**c.to_dict(), "steps": steps}

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.store.list(limit)]

    def status(self) -> dict[str, Any]:
        running = self.store.running()
        latest = self.store.list(1)
        sched = self.base_config.schedule
        return {
            "running": self.show(running.cycle_id) if running else None,
            "last": latest[0].to_dict() if latest else None,
            "schedule": {
                **sched.model_dump(),
                "active": self.scheduler.running,
                "next_run": self.scheduler.next_run(),
            },
        }
