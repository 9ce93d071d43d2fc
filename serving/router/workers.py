"""The router's own threads for its CPU work (query embedding, BM25), in two lanes with bounded queues.

Why not `asyncio.to_thread`: asyncio's default executor is shared with everything else that leaves the
event loop (feedback and database writes), and one queue for all messages lets a burst of long ones
hold the short ones back. Here a message's text decides its lane: short texts (most chat turns) have
their own workers, so however many long messages are queued, a "Hi there" waits for none of them; it
only shares the CPU with the one the long lane runs, whose threads run at a lower priority. A full lane refuses at once (`RouterBusy`) and a
cancelled call that has not started yet is dropped, so the router's backlog is bounded by both the
queue and the gateway's routing deadline (serving.router.hook).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

T = TypeVar("T")


class RouterBusy(RuntimeError):
    """The lane for this message is full: route it without the router (a fallback, never an error)."""


def _lower_priority(by: int) -> None:
    """Make the calling thread `by` nice levels nicer (Linux: each thread has its own nice value)."""
    if by <= 0 or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))


class _Lane:
    def __init__(self, name: str, workers: int, queue: int, nice: int = 0):
        self.name = name
        self.limit = workers + queue
        self.executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix=f"router-{name}",
            initializer=_lower_priority,
            initargs=(nice,),
        )
        self._pending = 0
        self._lock = threading.Lock()  # guards the counter only, never held around work

    def enter(self) -> None:
        with self._lock:
            if self._pending >= self.limit:
                raise RouterBusy(f"router {self.name} lane full ({self.limit} messages)")
            self._pending += 1

    def leave(self, _=None) -> None:
        with self._lock:
            self._pending -= 1

    @property
    def pending(self) -> int:
        return self._pending


class RoutingPool:
    def __init__(
        self,
        workers: int = 2,
        long_workers: int = 1,
        long_chars: int = 1000,
        queue: int = 16,
        long_nice: int = 10,
    ):
        self.long_chars = long_chars
        self.short = _Lane("short", max(1, workers), max(0, queue))
        # a long message's embedding (~2 s of a core here) yields the CPU to short messages and the event
        # loop: on a busy machine it is the long one that meets the deadline late, not everyone else
        self.long = _Lane("long", max(1, long_workers), max(0, queue), nice=long_nice)

    def lane(self, size: int) -> _Lane:
        return self.long if size > self.long_chars else self.short

    async def run(self, fn: Callable[..., T], *args, size: int = 0) -> T:
        """`fn(*args)` on the lane for a text of `size` characters; raises RouterBusy when it is full."""
        lane = self.lane(size)
        lane.enter()
        try:
            cf = lane.executor.submit(partial(fn, *args))
        except BaseException:
            lane.leave()
            raise
        # counted until the work finished or was dropped before it started (a cancelled wait leaves
        # running work running: native embedding cannot be interrupted, but it is bounded by the window)
        cf.add_done_callback(lane.leave)
        return await asyncio.wrap_future(cf)

    def shutdown(self) -> None:
        for lane in (self.short, self.long):
            lane.executor.shutdown(wait=False, cancel_futures=True)
