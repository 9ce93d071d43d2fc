"""The one error path: every package's user-facing error reaches keel's handler by its base's type and is
answered in OpenAI's shape with the status its class declares; anything else stays a 500 (a bug)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from keel.api.errors import install_error_handlers
from keel.errors import KeelError, http_status, user_errors
from keel.store.backup import BackupBusy, BackupError
from keel.store.keys import UnknownKey
from keel.store.registry import InvalidVersion, UnknownVersion

from flywheel.cycle import CycleBusy, CycleError, UnknownCycle
from flywheel.errors import FlywheelError
from serving.errors import APIError, ServingError
from serving.rag.documents import InputError
from training.data.snapshot import SnapshotError, SnapshotExists
from training.errors import TrainingError

CASES = [
    (KeelError("plain"), 400, None, None),
    (UnknownVersion("unknown version 'x'"), 404, "not_found", None),
    (InvalidVersion("invalid version name"), 400, None, "version"),
    (UnknownKey("no key"), 404, "not_found", None),
    (BackupError("dest exists"), 400, None, "dest"),
    (BackupBusy("indexer did not pause"), 503, "busy", "dest"),
    (ServingError("serving"), 400, None, None),
    (InputError("/x: no such file or folder"), 400, None, None),
    (TrainingError("training"), 400, None, None),
    (SnapshotError("bad snapshot"), 400, None, None),
    (SnapshotExists("exists"), 409, "export_exists", "out"),
    (FlywheelError("flywheel"), 400, None, None),
    (CycleError("refused"), 400, "cycle_refused", None),
    (UnknownCycle("unknown cycle 'c'"), 404, "not_found", None),
    (CycleBusy("cycle-1"), 409, "cycle_running", "cycle-1"),
    (APIError(418, "teapot", "tea"), 418, "tea", None),
]


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{n}")
    def boom(n: int):
        raise CASES[n][0]

    @app.get("/bug")
    def bug():
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_every_package_base_is_handled():
    assert {KeelError, ServingError, TrainingError, FlywheelError} == set(user_errors())
    assert issubclass(APIError, ServingError) and issubclass(CycleError, FlywheelError)


@pytest.mark.parametrize("n", range(len(CASES)), ids=[type(c[0]).__name__ for c in CASES])
def test_the_class_says_the_status(client, n):
    exc, status, code, param = CASES[n]
    r = client.get(f"/raise/{n}")
    assert r.status_code == status == http_status(exc)
    err = r.json()["error"]
    assert err["message"] == str(exc) and err["code"] == code and err["param"] == param


def test_anything_else_is_a_500_bug(client):
    assert client.get("/bug").status_code == 500


def test_a_status_outside_4xx_5xx_is_not_trusted():
    class Odd(KeelError):
        status = 200

    assert http_status(Odd("x")) == 400
