"""Starts, watches and stops managed engines; restarts a crashed one."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from serving.config import EngineConfig
from serving.engine.pool import Endpoint, EnginePool
from serving.engine.process import (
    EngineProcess,
    EngineStartError,
    _is_cuda_host,
    diagnose,
    find_free_port,
    owns_port,
)

log = logging.getLogger("keel.engine")


class EngineSupervisor:
    def __init__(self, config: EngineConfig, served_name: str, logs_dir: Path, pool: EnginePool):
        self.config = config
        self.served_name = served_name
        self.logs_dir = logs_dir
        self.pool = pool
        self.processes: dict[int, EngineProcess] = {}  # id(endpoint) → process
        self._stopping = False
        self._monitor: asyncio.Task | None = None
        self.last_error: str | None = None
        self._starting: set[EngineProcess] = set()
        # set by the Swapper: proves a restarted engine serves the weights it served before the crash
        self.verify_restarted: Callable[[Endpoint], Awaitable[None]] | None = None

    def _pick_core(self) -> str | None:
        """vLLM's CPU auto-binding pins every engine's worker to the same core; a second engine (blue/green,
        replicas) then starves behind the first. Give each new engine the core our live engines use least."""
        if _is_cuda_host() or "VLLM_CPU_OMP_THREADS_BIND" in self.config.extra_env:
            return None
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            return None
        used = [p.cpu_bind for p in self.processes.values() if p.alive()]
        return str(min(cores, key=lambda c: (used.count(str(c)), c)))

    def _taken_ports(self) -> set[int]:
        return {p.port for p in self.processes.values()}

    async def start_engine(
        self, version: str, model_dir: Path, timeout: float | None = None
    ) -> tuple[Endpoint, EngineProcess]:
        """Launch one engine and wait for /health. Launch happens on the loop thread: PDEATHSIG is per thread."""
        port = find_free_port(self.config.host, self.config.base_port, self._taken_ports())
        proc = EngineProcess(
            model_dir=model_dir,
            served_name=self.served_name,
            port=port,
            config=self.config,
            log_path=self.logs_dir / f"engine-{port}.log",
            version=version,
            cpu_bind=self._pick_core(),
        )
        proc.launch()
        self._starting.add(proc)  # so a shutdown during start-up stops it too
        try:
            await self.wait_healthy(proc, timeout or self.config.startup_timeout_s)
        except BaseException:
            await asyncio.to_thread(proc.stop)
            raise
        finally:
            self._starting.discard(proc)
        ep = Endpoint(url=proc.url, version=version, model_dir=str(model_dir), managed=True)
        self.processes[id(ep)] = proc
        return ep, proc

    async def wait_healthy(self, proc: EngineProcess, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not proc.alive():
                    raise EngineStartError(diagnose(proc.log_tail(), proc.port, str(proc.model_dir)))
                try:
                    healthy = (await client.get(f"{proc.url}/health")).status_code == 200
                    if healthy and proc.proc is not None and owns_port(proc.proc.pid, proc.port):
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
        raise EngineStartError(
            f"engine on port {proc.port} not healthy after {timeout:.0f} s (see {proc.log_path})"
        )

    async def start_version(
        self, version: str, model_dir: Path, replicas: int | None = None
    ) -> list[Endpoint]:
        eps = []
        for _ in range(replicas or self.config.replicas):
            ep, _proc = await self.start_engine(version, model_dir)
            eps.append(ep)
        return eps

    def process_of(self, ep: Endpoint) -> EngineProcess | None:
        return self.processes.get(id(ep))

    async def restart_on(self, ep: Endpoint, version: str, model_dir: Path, timeout: float) -> None:
        """Relaunch a managed engine on another checkpoint (same port); the caller keeps it out of rotation."""
        await self._relaunch(self.processes[id(ep)], ep, version, model_dir, timeout)

    async def _relaunch(
        self, proc: EngineProcess, ep: Endpoint, version: str, model_dir: Path, timeout: float
    ) -> None:
        await asyncio.to_thread(proc.stop)
        proc.model_dir, proc.version = model_dir, version
        if self.config.base_port == 0:  # the old port may linger in TIME_WAIT; take a fresh one
            proc.port = find_free_port(self.config.host, 0, self._taken_ports())
            ep.url = proc.url
        proc.launch()
        await self.wait_healthy(proc, timeout)

    async def stop_endpoint(self, ep: Endpoint) -> None:
        proc = self.processes.pop(id(ep), None)
        if proc is not None:
            await asyncio.to_thread(proc.stop)

    def start_monitor(self) -> None:
        self._monitor = asyncio.create_task(self._watch(), name="engine-monitor")

    async def _watch(self) -> None:
        crashes: dict[int, int] = {}
        while not self._stopping:
            await asyncio.sleep(1.0)
            for ep in list(self.pool.endpoints):
                proc = self.processes.get(id(ep))
                if proc is None or proc.alive() or self._stopping:
                    continue
                ep.healthy = False
                key = id(ep)
                crashes[key] = crashes.get(key, 0) + 1
                self.last_error = diagnose(proc.log_tail(), proc.port, str(proc.model_dir))
                log.error("engine %s (version %s) exited: %s", proc.url, ep.version, self.last_error)
                if not self.config.restart_on_crash or crashes[key] > self.config.max_restarts:
                    continue
                try:
                    # an in-place swap may have changed the weights this endpoint serves: restart on those
                    model_dir = Path(ep.model_dir) if ep.model_dir else proc.model_dir
                    await self._relaunch(proc, ep, ep.version, model_dir, self.config.startup_timeout_s)
                    if self.verify_restarted is not None:
                        await self.verify_restarted(ep)
                    ep.healthy = True
                    crashes[key] = 0
                    log.warning("engine %s restarted", proc.url)
                except Exception as e:  # noqa: BLE001 - start failure or wrong weights: out of rotation
                    self.last_error = str(e)
                    log.error("engine restart failed: %s", e)

    async def stop_all(self) -> None:
        self._stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
        procs = list(self.processes.values()) + list(self._starting)
        self.processes.clear()
        self._starting.clear()
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))
