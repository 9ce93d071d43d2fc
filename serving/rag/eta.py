"""The background embedding rate and ETA, from what was measured recently.

The rate of a pass since its start misleads twice: the first batch carries the runtime's start-up (a
session, page-ins), and a pass interrupted every few minutes by index requests or held while the
flywheel trains restarts at "unknown". Here every batch is a sample (chunks, seconds from the end of
the previous batch, its pause included: what the next batch will cost too); the rate is over the
samples of the last `window_s` seconds of embedding, across passes; time between passes (held, paused,
lexical work) is not embedding time and is left out.
"""

from __future__ import annotations

import time
from collections import deque


class RateMeter:
    def __init__(self, window_s: float = 300.0, clock=time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self._samples: deque[tuple[int, float]] = deque()  # (chunks, seconds)
        self._last: float | None = None  # end of the previous batch of this pass

    def start_pass(self) -> None:
        """Embedding (re)starts: the gap since the last batch was not spent embedding."""
        self._last = self.clock()

    def batch(self, chunks: int) -> None:
        """A batch of `chunks` just finished."""
        now = self.clock()
        if self._last is not None and chunks > 0:
            self._samples.append((chunks, max(now - self._last, 1e-6)))
            # keep the most recent window_s seconds of embedding (at least the newest sample)
            while (
                len(self._samples) > 1
                and sum(s for _, s in self._samples) - self._samples[0][1] >= self.window_s
            ):
                self._samples.popleft()
        self._last = now

    def rate(self) -> float | None:
        """Chunks per second of embedding time over the window; None before the first batch."""
        secs = sum(s for _, s in self._samples)
        return sum(c for c, _ in self._samples) / secs if secs > 0 else None

    def eta(self, remaining: int) -> float | None:
        """Seconds to embed `remaining` chunks at the recent rate."""
        r = self.rate()
        if remaining <= 0:
            return 0.0
        return remaining / r if r else None
