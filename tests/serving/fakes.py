"""Fakes for unit tests of the gateway's logic: a key store with one good key and a request-log sink."""

from __future__ import annotations

import time

from serving.gateway.auth import Principal


class Keys:
    def verify(self, secret):
        return Principal("key_t", "t") if secret == "good" else None


class Sink:
    """Keeps every submitted request record (the writer's role), in order."""

    def __init__(self):
        self.records = []

    def submit(self, record):
        self.records.append(record)

    def wait(self, n: int = 1, timeout: float = 10.0) -> list:
        """The records once there are `n` of them (the gateway submits after the response ends)."""
        deadline = time.monotonic() + timeout
        while len(self.records) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.records
