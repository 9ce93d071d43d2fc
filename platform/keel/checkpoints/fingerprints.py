"""Each checkpoint's probe fingerprint: computed once (at registration, or on first need) and kept.

The reference comes from transformers in a child process on the registered folder, in the engine's
dtype; swaps and engine starts compare the engine's answers with it (serving.engine.swap).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from pathlib import Path

from keel.errors import KeelError
from keel.store import fingerprints as store
from keel.store.db import Database
from keelcommon.files import write_json_atomic
from serving.engine.fingerprint import Fingerprint, FingerprintError, compute_in_child

log = logging.getLogger("keel.fingerprint")

CACHE_FILE = ".keel-fingerprint.json"


def weights_signature(folder: Path) -> list[list]:
    """Name, size and mtime of every weights file: a changed file invalidates a cached fingerprint."""
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(folder.glob("*.safetensors"))]


def _cached(folder: Path, dtype: str) -> Fingerprint | None:
    """A fingerprint computed before for these very files (another data dir, an earlier registry)."""
    try:
        data = json.loads((folder / CACHE_FILE).read_text())
        if data["dtype"] == dtype and data["weights"] == weights_signature(folder):
            return Fingerprint.model_validate(data["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _cache(folder: Path, fp: Fingerprint, signature: list[list]) -> None:
    if not os.access(folder, os.W_OK):
        return
    try:
        write_json_atomic(
            folder / CACHE_FILE,
            {"dtype": fp.dtype, "weights": signature, "fingerprint": fp.model_dump()},
            indent=None,
        )
    except OSError as e:
        log.warning("could not cache the fingerprint in %s: %s", folder, e)


class FingerprintUnavailable(KeelError, RuntimeError):
    """A checkpoint's fingerprint could not be computed; one line."""


class FingerprintBook:
    def __init__(self, db: Database, dtype: str = "float32", enabled: bool = True, timeout_s: float = 600):
        self.db, self.dtype, self.enabled, self.timeout_s = db, dtype, enabled, timeout_s
        self._lock = threading.Lock()  # one computation at a time: each loads a copy of the model

    def get(self, version: str) -> Fingerprint | None:
        return store.get(self.db, version, self.dtype) if self.enabled else None

    def ensure(self, version: str, path: Path) -> Fingerprint | None:
        """The stored fingerprint, computing and storing it first if there is none (None: disabled)."""
        if not self.enabled:
            return None
        with self._lock:
            fp = store.get(self.db, version, self.dtype)
            if fp is not None:
                return fp
            fp = _cached(path, self.dtype)
            if fp is None:
                log.info("computing the probe fingerprint of %s (%s)", version, path)
                signature = weights_signature(path)  # of the files before they are read
                try:
                    fp = compute_in_child(path, self.dtype, self.timeout_s)
                except FingerprintError as e:
                    raise FingerprintUnavailable(str(e)) from e
                _cache(path, fp, signature)
            store.put(self.db, version, fp)
            return fp

    async def aensure(self, version: str, path: Path) -> Fingerprint | None:
        return await asyncio.to_thread(self.ensure, version, path)
