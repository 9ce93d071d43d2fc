"""Fakes for unit tests of the gateway's logic: a key store with one good key and a request-log sink."""

from __future__ import annotations

import time

import httpx
from fastapi import FastAPI

from serving.config import GatewayConfig
from serving.engine.pool import Endpoint, EnginePool
from serving.gateway.api import router as api_router
from serving.gateway.auth import Principal
from serving.gateway.chat import ChatService


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


def gateway_app(engine_handler, **chat_kw) -> tuple[FastAPI, Sink]:
    """The gateway's routes over one fake engine (an httpx MockTransport handler) and a Sink."""
    app = FastAPI()
    pool = EnginePool()
    pool.endpoints = [Endpoint(url="http://engine", version="v1")]
    sink = Sink()
    client = httpx.AsyncClient(transport=httpx.MockTransport(engine_handler))
    app.state.pool = pool
    app.state.chat = ChatService(pool, sink, Keys(), GatewayConfig(), client, **chat_kw)
    app.include_router(api_router)
    return app, sink
