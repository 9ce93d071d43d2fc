"""Hot swap of the served weights with no failed request.

In place (same architecture and tokenizer): new requests are held at the gateway, in-flight ones
finish on the old weights (the gateway drains them, then vLLM's ``/pause?mode=wait`` — never
``keep``, which freezes in-flight requests and resumes them on the new weights, mixing two versions
in one response), ``reload_weights`` from the new folder, reset the prefix cache, resume, release.
With several replicas one is reloaded out of rotation first, then traffic switches to it at one
instant and the rest follow, so capacity never drops to zero.

Blue/green (otherwise): start engines on the new version, wait for health and a warm-up completion,
switch the pool atomically, drain the old engines (streams included) and stop them.

Verified: a 200 from ``reload_weights`` or a warm-up answer does not prove the new weights are served
(vLLM has open reports of reloads that silently keep the old ones), so after every reload and every
engine start the engine answers the checkpoint's probe fingerprint (serving.engine.fingerprint) before it
takes traffic; a mismatch refuses the swap and puts the old weights back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from serving.config import SwapConfig
from serving.engine.client import EngineClient
from serving.engine.compat import NotServableError, check_servable, same_architecture
from serving.engine.fingerprint import (
    DEFAULT_TOLERANCE,
    Fingerprint,
    FingerprintError,
    ask_engine,
    compare,
)
from serving.engine.pool import Endpoint, EnginePool
from serving.engine.process import EngineStartError
from serving.engine.supervisor import EngineSupervisor
from serving.errors import ServingError

log = logging.getLogger("keel.swap")


class SwapError(ServingError, RuntimeError):
    """The swap did not happen; serving is unchanged. One line."""


@dataclass
class SwapResult:
    strategy: str
    from_version: str | None
    to_version: str
    seconds: float
    held_s: float = 0.0


async def _engine_call(
    client: httpx.AsyncClient, ep: Endpoint, path: str, json: dict | None = None, timeout: float = 300
) -> None:
    r = await client.post(f"{ep.url}{path}", json=json, timeout=timeout)
    if r.status_code >= 400:
        raise SwapError(f"engine {ep.url}{path} answered {r.status_code}: {r.text[:200]}")


async def reload_endpoint(client: httpx.AsyncClient, ep: Endpoint, new_dir: Path) -> None:
    """Pause (waiting for anything in flight), reload, reset the prefix cache, resume."""
    await _engine_call(client, ep, "/pause?mode=wait")
    try:
        await _engine_call(
            client,
            ep,
            "/collective_rpc",
            {"method": "reload_weights", "kwargs": {"weights_path": str(new_dir)}},
        )
        await _engine_call(client, ep, "/reset_prefix_cache")
    finally:
        await _engine_call(client, ep, "/resume")


class WrongWeightsError(SwapError):
    """The engine answered the probes unlike the checkpoint it was asked to serve."""


async def verify_weights(
    engine: EngineClient,
    ep: Endpoint,
    version: str,
    fingerprint: Fingerprint,
    tolerance: float = DEFAULT_TOLERANCE,
    timeout: float = 120,
) -> None:
    """Raise WrongWeightsError unless `ep` answers `version`'s probes within `tolerance`."""
    try:
        got = await ask_engine(engine, ep, fingerprint, timeout=timeout)
    except FingerprintError as e:
        raise SwapError(f"could not verify the weights on {ep.url}: {e}") from e
    if (diff := compare(fingerprint, got, tolerance)) is not None:
        raise WrongWeightsError(f"{ep.url} does not serve the weights of {version} ({diff})")
    ep.fingerprint = fingerprint


async def warm_up(engine: EngineClient, ep: Endpoint, timeout: float) -> None:
    """One short completion on new weights before they take traffic (not counted: ``ep`` may not be in
    the pool yet)."""
    body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}
    try:
        reply = await engine.complete(body, endpoint=ep, counted=False, timeout_s=timeout)
    except httpx.HTTPError as e:
        raise SwapError(f"warm-up request to {ep.url} failed: {type(e).__name__}") from e
    if reply.status != 200 or not (reply.ok and reply.data.get("choices")):
        raise SwapError(f"warm-up request to {ep.url} failed with {reply.status}")


class Swapper:
    def __init__(
        self,
        pool: EnginePool,
        supervisor: EngineSupervisor | None,
        client: httpx.AsyncClient,
        served_name: str,
        config: SwapConfig | None = None,
    ):
        self.pool, self.supervisor, self.client, self.served_name = pool, supervisor, client, served_name
        self.engine = EngineClient(pool, client, served_name)
        self.config = config or SwapConfig()
        self.lock = asyncio.Lock()
        # the fingerprint the swap in progress checks new weights against (None: not verified)
        self._fingerprint: Fingerprint | None = None
        if supervisor is not None:  # a crashed engine restarted by the supervisor is verified too
            supervisor.verify_restarted = self.verify_endpoint

    async def verify_endpoint(self, ep: Endpoint, fingerprint: Fingerprint | None = None) -> None:
        """Check `ep` against `fingerprint` (default: the one it was last verified against)."""
        fp = fingerprint or ep.fingerprint
        if fp is None:
            log.warning("no fingerprint for %s on %s: its weights are not verified", ep.version, ep.url)
            return
        await verify_weights(
            self.engine,
            ep,
            ep.version,
            fp,
            self.config.verify_tolerance,
            self.config.warmup_timeout_s,
        )

    def plan(self, new_dir: Path) -> tuple[str, str]:
        """("in_place" | "blue_green", why)."""
        try:
            check_servable(new_dir)
        except NotServableError as e:
            raise SwapError(str(e)) from e
        current = self.pool.endpoints[0].model_dir if self.pool.endpoints else None
        if current is None:
            return "blue_green", "no engine is serving"
        ok, why = same_architecture(Path(current), new_dir)
        return ("in_place", "same architecture and tokenizer") if ok else ("blue_green", why)

    async def swap(
        self,
        version: str,
        new_dir: Path,
        strategy: str | None = None,
        fingerprint: Fingerprint | None = None,
    ) -> SwapResult:
        """Serve `version` from `new_dir`; with a fingerprint, only once the engines answer its probes."""
        if self.lock.locked():
            raise SwapError("another swap is running; try again when it has finished")
        async with self.lock:
            self._fingerprint = fingerprint
            if fingerprint is None:
                log.warning("swap to %s without a fingerprint: the new weights are not verified", version)
            planned, why = self.plan(new_dir)
            asked = strategy  # None: ours to choose (and to change if in place is refused)
            strategy = strategy or planned
            if strategy == "in_place" and planned != "in_place":
                raise SwapError(f"cannot swap in place: {why}")
            from_version = self.pool.version
            log.info("swap %s → %s: %s (%s)", from_version, version, strategy, why)
            t0 = time.perf_counter()
            held0 = self.pool.held_so_far()
            chosen = strategy
            try:
                if strategy == "in_place":
                    try:
                        await self._in_place(version, new_dir)
                    except WrongWeightsError as e:
                        # The reload answered 200 but the engine does not serve the new weights (vLLM can
                        # keep stale ones, e.g. a tied output layer's packed copy on CPU). The old weights
                        # are back; a fresh engine loads the folder from scratch, where we can start one.
                        if asked is not None or self.supervisor is None or not getattr(e, "restored", False):
                            raise
                        log.warning(
                            "in-place swap to %s refused (%s); starting a fresh engine instead", version, e
                        )
                        chosen = "blue_green"
                        await self._blue_green(version, new_dir)
                else:
                    await self._blue_green(version, new_dir)
            finally:
                self._fingerprint = None
            held = self.pool.held_so_far() - held0  # measured at the pool's gate, whatever the path
            seconds = time.perf_counter() - t0
            log.info("swap %s → %s done: %s in %.1f s (requests held %.2f s)", from_version, version,
                     chosen, seconds, held)  # fmt: skip
            return SwapResult(chosen, from_version, version, seconds, held)

    async def _in_place(self, version: str, new_dir: Path) -> None:
        eps = [e for e in self.pool.endpoints if e.healthy]
        if not eps:
            raise SwapError("no healthy engine to reload")
        if len(eps) == 1:
            await self._reload_held(eps[0], version, new_dir)
            return
        # Several replicas: reload the first out of rotation, switch to it, then roll the rest.
        first, rest = eps[0], eps[1:]
        first.healthy = False
        try:
            await self._drain(first)
            await self._reload_checked(first, new_dir, version)
        except BaseException as e:
            first.healthy = getattr(e, "restored", True)  # never back in rotation with unknown weights
            raise
        first.version, first.model_dir = version, str(new_dir)
        for ep in rest:  # one instant: new requests go only to the new version from here on
            ep.healthy = False
        first.healthy = True
        # From here the new version serves; a replica that fails to follow stays out of rotation (it must
        # never answer with the old weights again) and a managed one is restarted on the new folder.
        for ep in rest:
            await self._drain(ep, then="reloading anyway")
            try:
                await self._reload_checked(ep, new_dir, version)
            except SwapError as e:
                await self._replace_replica(ep, version, new_dir, e)
                continue
            ep.version, ep.model_dir = version, str(new_dir)
            ep.healthy = True

    async def _replace_replica(self, ep: Endpoint, version: str, new_dir: Path, cause: SwapError) -> None:
        log.error("replica %s did not take %s in place (%s)", ep.url, version, cause)
        ep.version, ep.model_dir = version, str(new_dir)
        if self.supervisor is None or self.supervisor.process_of(ep) is None:
            return  # an external replica: out of rotation until someone restarts it on the new version
        try:
            await self.supervisor.restart_on(ep, version, new_dir, self.config.start_timeout_s)
            await warm_up(self.engine, ep, self.config.warmup_timeout_s)
            await self._verify_new(ep, version)
        except (EngineStartError, SwapError, httpx.HTTPError) as e:
            log.error("replica %s could not be restarted on %s: %s", ep.url, version, e)
            return
        ep.healthy = True

    async def _reload_held(self, ep: Endpoint, version: str, new_dir: Path) -> None:
        self.pool.hold()
        try:
            await self._drain(ep)
            await self._reload_checked(ep, new_dir, version)
            ep.version, ep.model_dir = version, str(new_dir)
        finally:
            self.pool.release()

    async def _drain(self, ep: Endpoint, then: str | None = None) -> None:
        """Wait (up to drain_timeout_s) for ``ep``'s in-flight requests, streams included. Past the timeout
        the swap fails (SwapError) or, where ``then`` says what happens anyway, goes on with a warning."""
        timeout = self.config.drain_timeout_s
        if await self.pool.drain(ep, timeout):
            return
        if then is None:
            raise SwapError(
                f"in-flight requests on {ep.url} did not finish in {timeout:.0f} s; nothing changed"
            )
        log.warning("engine %s still busy after %.0f s; %s", ep.url, timeout, then)

    async def _verify_new(self, ep: Endpoint, version: str) -> None:
        if self._fingerprint is not None:
            await verify_weights(
                self.engine,
                ep,
                version,
                self._fingerprint,
                self.config.verify_tolerance,
                self.config.warmup_timeout_s,
            )

    async def _reload_checked(self, ep: Endpoint, new_dir: Path, version: str) -> None:
        old_dir, old_fp = ep.model_dir, ep.fingerprint
        try:
            await reload_endpoint(self.client, ep, new_dir)
            await warm_up(self.engine, ep, self.config.warmup_timeout_s)
            await self._verify_new(ep, version)
        except (SwapError, httpx.HTTPError) as e:
            # Put the old weights back so the engine never serves a half-loaded (or unverified) model.
            ep.fingerprint = old_fp
            restored = True
            if old_dir:
                try:
                    await reload_endpoint(self.client, ep, Path(old_dir))
                    if old_fp is not None:  # and prove they are back
                        await verify_weights(
                            self.engine,
                            ep,
                            ep.version,
                            old_fp,
                            self.config.verify_tolerance,
                        )
                except (SwapError, httpx.HTTPError):
                    restored = False
                    log.exception("could not restore %s on %s; it leaves rotation", old_dir, ep.url)
            else:
                restored = False
            if not restored:
                ep.healthy = False
            if isinstance(e, WrongWeightsError):
                err: SwapError = WrongWeightsError(
                    f"refused: after reload {e}; "
                    + ("the old weights were put back" if restored else "the engine left rotation")
                )
            else:
                err = SwapError(f"reload on {ep.url} failed: {e}")
            err.restored = restored  # type: ignore[attr-defined]
            raise err from e

    async def _start_with_retry(self, version: str, new_dir: Path) -> Endpoint:
        """A start that hangs (seen on an oversubscribed 2-core host) gets one more try on a fresh port."""
        assert self.supervisor is not None
        for attempt in (1, 2):
            t0 = time.perf_counter()
            try:
                ep, _proc = await self.supervisor.start_engine(
                    version, new_dir, timeout=self.config.start_timeout_s
                )
                log.info("new engine %s for %s healthy in %.1f s", ep.url, version, time.perf_counter() - t0)
                return ep
            except EngineStartError as e:
                if attempt == 2 or "not healthy after" not in str(e):
                    raise SwapError(f"new engine failed: {e}") from e
                log.warning(
                    "new engine did not start in %.0f s; trying once more", self.config.start_timeout_s
                )
        raise AssertionError("unreachable")

    async def _blue_green(self, version: str, new_dir: Path) -> None:
        if self.supervisor is None:
            raise SwapError("blue/green needs managed engines; external engines can only be swapped in place")
        old = list(self.pool.endpoints)
        started: list[Endpoint] = []
        try:
            for _ in range(max(1, len(old))):
                ep = await self._start_with_retry(version, new_dir)
                started.append(ep)
                await warm_up(self.engine, ep, self.config.warmup_timeout_s)
                try:
                    await self._verify_new(ep, version)
                except WrongWeightsError as e:
                    raise WrongWeightsError(f"refused: the new engine {e}; it was stopped") from e
        except BaseException as e:
            for ep in started:
                await self.supervisor.stop_endpoint(ep)
            if isinstance(e, Exception) and not isinstance(e, SwapError):
                raise SwapError(f"new engine failed: {e}") from e
            raise
        self.pool.endpoints = started  # the switch: one assignment on the event loop
        log.info(
            "switched to %s on %s; draining %d old engine(s)", version, [e.url for e in started], len(old)
        )
        for ep in old:
            await self._drain(ep, then="stopping it")
            await self.supervisor.stop_endpoint(ep)
