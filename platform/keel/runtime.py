"""What exists only while the platform runs, filled by ``Platform.start``.

The event loop, the intent router and the background indexer need the running loop, the engines or the
index on disk, so they cannot be built with the other parts. The parts built before start (the cycle's
steps, ``/metrics``) are handed this one object and read it when they act: nothing is wired onto them
afterwards, and offline (the CLI with no platform) they get None.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class Runtime:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.router: Any = None  # serving.router.service.Router, when routing is on
        self.indexer: Any = None  # serving.rag.background.BackgroundIndexer

    def quiet(self) -> contextlib.AbstractContextManager:
        """Held while a training or eval child runs: the background dense embedding waits (CPU)."""
        return self.indexer.dense_held() if self.indexer is not None else contextlib.nullcontext()
