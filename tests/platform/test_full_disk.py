"""A full disk (issue 28 item 5): a checkpoint save, a request-log journal write, the request log's DuckDB
inserts and spill, a streamed answer, a backup, a restore and a checkpoint registration each fail with one
line of their own, leave nothing half-written behind (no temp folder, no torn journal line, nothing
registered, a restore's data dir as it was), lose nothing already logged, keep serving (the request path
answers, or says 503 with an error event), are counted on /metrics, and succeed once space is freed.

Each test fills a real 8 MiB tmpfs (tests/support/small_fs.py: needs root; skipped locally without it,
a failure under CI=true) with a ballast file, tries the operation, deletes the ballast and tries again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from keel.config import load_settings
from keel.store import registry
from keel.store.backup import MANIFEST, BackupNoSpace, backup
from keel.store.db import Database
from keel.store.requestlog import RequestLogConfig, RequestLogWriter
from safetensors.numpy import save_file

from serving.gateway.recording import Recording
from serving.records import RecordError, RequestRecord
from tests.support.small_fs import SmallFs, small_fs  # noqa: F401 - the fixture
from training.checkpoint import CheckpointError, Manifest, clean_debris, load_manifest, write_checkpoint
from training.stages.common import RunPaths, save_final

KIB = 1024


def one_line(text: str) -> None:
    assert text and "\n" not in text.strip() and "Traceback" not in text, text


# ---- (a) a checkpoint save ----------------------------------------------------------------------------
def _weights(tmp: Path) -> None:
    """A tiny model's folder: its config and 1 MiB of safetensors weights."""
    (tmp / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 512}))
    save_file({"w": np.ones((512, 512), dtype=np.float32)}, str(tmp / "model.safetensors"))


@pytest.mark.parametrize("fills_at", ["weights", "manifest"])
def test_checkpoint_save_on_a_full_disk(small_fs: SmallFs, tmp_path: Path, fills_at: str):  # noqa: F811
    checkpoints = small_fs.path / "checkpoints"
    checkpoints.mkdir()
    dest = checkpoints / "sft-1"
    manifest = Manifest(version="sft-1", parent="base", stage="sft", steps=1)

    def fill(tmp: Path) -> None:
        _weights(tmp)
        if fills_at == "manifest":  # the weights are in: the disk fills before the manifest goes last
            small_fs.fill(leave=0)

    if fills_at == "weights":
        small_fs.fill(leave=256 * KIB)
    before = small_fs.available()
    with pytest.raises(CheckpointError) as e:
        write_checkpoint(dest, fill, manifest)
    one_line(str(e.value))
    assert "no space left on device" in str(e.value) and str(dest) in str(e.value)
    # nothing half-written is left, so nothing can be registered, and the space it took is back
    assert not dest.exists() and sorted(p.name for p in checkpoints.iterdir()) == []
    assert clean_debris(checkpoints) == []
    if fills_at == "weights":
        assert small_fs.available() >= before
    db = Database(tmp_path / "keel.duckdb")
    with pytest.raises(registry.RegistryError):
        registry.add(db, dest)
    assert db.fetchall("SELECT count(*) FROM checkpoints")[0][0] == 0

    small_fs.free()
    fills_at = "nowhere"
    assert write_checkpoint(dest, fill, manifest) == dest
    assert load_manifest(dest).version == "sft-1" and (dest / "model.safetensors").stat().st_size > 1 << 20
    assert registry.add(db, dest).version == "sft-1"
    assert [p.name for p in checkpoints.iterdir()] == ["sft-1"]


class _Trainer:
    """What save_final reads of a finished HF Trainer: a model without LoRA, save_model, args."""

    model = object()
    args = SimpleNamespace(world_size=1)

    def save_model(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        _weights(Path(folder))


def test_final_save_of_a_training_run_on_a_full_disk(small_fs: SmallFs, tmp_path: Path):  # noqa: F811
    paths = RunPaths.for_output(small_fs.path / "checkpoints" / "sft-2")
    paths.work.mkdir(parents=True)
    (paths.work / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    base = tmp_path / "base"
    base.mkdir()
    run = {
        "tokenizer": SimpleNamespace(save_pretrained=lambda d: (Path(d) / "tokenizer.json").write_text("{}")),
        "cfg": SimpleNamespace(model=str(base), version="sft-2", stage="sft", report=False, to_dict=dict),
        "paths": paths,
        "snap": SimpleNamespace(kind="sft", hash="h" * 64, path=tmp_path / "snap"),
        "steps": 1,
        "recorder": SimpleNamespace(records=[{"step": 1, "loss": 2.0}], resumed_from=None),
        "budget": SimpleNamespace(summary=dict),
    }
    small_fs.fill(leave=256 * KIB)
    with pytest.raises(CheckpointError) as e:
        save_final(_Trainer(), **run)
    one_line(str(e.value))
    assert "no space left on device" in str(e.value)
    # no half-written final folder (it would hold 1 MiB the disk needs back); the run's states are kept
    assert sorted(p.name for p in paths.output.parent.iterdir()) == [paths.work.name]
    assert (paths.work / "metrics.jsonl").exists()

    small_fs.free()
    result = save_final(_Trainer(), **run)
    assert result.output == paths.output and load_manifest(paths.output).version == "sft-2"
    assert sorted(p.name for p in paths.output.parent.iterdir()) == ["sft-2"]


# ---- (b) a request-log journal write ------------------------------------------------------------------
def _rec(rid: str, text: str = "an answer") -> RequestRecord:
    return RequestRecord(
        request_id=rid, messages=[{"role": "user", "content": f"question {rid}"}], response_text=text
    )


def _ids(db: Database) -> list[str]:
    return [r[0] for r in db.fetchall("SELECT request_id FROM requests ORDER BY request_id")]


def _journaled(journal: Path) -> list[str]:
    """Every row the journal holds; each line must be whole JSON (no torn line)."""
    ids = []
    for seg in sorted(journal.glob("*.jsonl")):
        for line in seg.read_text(encoding="utf-8").splitlines():
            ids.append(json.loads(line)["request_id"])
    return ids


def test_request_log_journal_on_a_full_disk(small_fs: SmallFs):  # noqa: F811
    data = small_fs.path / "data"  # the database and the journal on the disk that fills, as in a data dir
    db = Database(data / "keel.duckdb")
    journal = data / "journal"
    writer = RequestLogWriter(db, journal, RequestLogConfig(flush_interval_s=0.05))
    writer.start()
    try:
        for i in range(3):
            writer.submit(_rec(f"a{i}"))
        assert writer.flush(10)
        assert _ids(db) == ["a0", "a1", "a2"]

        small_fs.fill(leave=0)
        # a row larger than a page: the journal's write must take space the disk no longer has
        with pytest.raises(RecordError) as e:
            writer.submit(_rec("refused", "x" * 20_000))
        one_line(str(e.value))
        assert "refused" in str(e.value) and "no space left on device" in str(e.value)
        assert e.value.status == 503
        assert writer.stats()["unjournaled"] == 1
        assert _metrics(db, writer)["keel_requestlog_unjournaled"] == 1  # counted on /metrics
        # what was committed before the disk filled is still there; the journal holds no part of the
        # refused row (a torn line would fail json.loads; a later append must not complete it)
        assert _ids(db) == ["a0", "a1", "a2"]
        assert "refused" not in _journaled(journal)

        small_fs.free()
        writer.submit(_rec("b0", "y" * 20_000))
        assert writer.flush(10)
        assert _ids(db) == ["a0", "a1", "a2", "b0"]
        assert "refused" not in _journaled(journal)
    finally:
        writer.close()
    # a restart replays nothing of the refused row, and every logged row is readable
    again = RequestLogWriter(db, journal)
    again.start()
    again.close()
    assert _ids(db) == ["a0", "a1", "a2", "b0"]
    assert writer.stats()["unjournaled"] == 1
    db.close()  # before the small disk is unmounted


def _metrics(db: Database, writer) -> dict:
    """What the platform's /metrics shows for this request-log writer (the real collector)."""
    from keel.metrics import MetricSources, PlatformMetrics, parse

    from serving.engine.pool import EnginePool

    return {
        fam.name: fam.samples[0].value
        for fam in parse(PlatformMetrics(MetricSources(db, writer, EnginePool())).render().decode()).values()
        if fam.name.startswith("keel_requestlog_")
    }


def _sized(rid: str, size: int) -> RequestRecord:
    """A record whose journal line (with its newline) is ``size`` bytes."""
    rec = _rec(rid, "")
    rec.response_text = "z" * (size - len(rec.model_dump_json()) - 1)
    assert len(rec.model_dump_json()) + 1 == size
    return rec


def _page_slack(path: Path) -> int:
    """Bytes an append to ``path`` can still take without a new page (what a full tmpfs allows)."""
    return -path.stat().st_size % os.statvfs(path).f_bsize


def _requestlog_errors(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "keel.store.requestlog" and r.levelname == "ERROR"
    ]


def test_request_log_database_on_a_full_disk(small_fs: SmallFs, caplog):  # noqa: F811
    """DuckDB's disk fills while rows are journaled: the inserts fail, every row stays (held and retried,
    nothing newer overtakes it), submit() keeps answering, and the rows go in once space is freed."""
    data = small_fs.path / "data"  # the database and the journal on the disk that fills, as in a data dir
    db = Database(data / "keel.duckdb")
    journal = data / "journal"
    writer = RequestLogWriter(db, journal, RequestLogConfig(flush_interval_s=0.05))
    writer.start()
    try:
        writer.submit(_sized("a0", 4096 + 64))  # the segment's last page keeps room for 4 small rows
        assert writer.flush(10)
        db.execute("CHECKPOINT")  # an empty write-ahead log: the next insert needs a page of its own
        small_fs.fill(leave=0)
        [seg] = journal.glob("seg-*.jsonl")
        rows = [_rec(f"b{i}") for i in range(3)]
        assert _page_slack(seg) >= sum(len(r.model_dump_json()) + 1 for r in rows)
        for r in rows:
            writer.submit(r)  # the answer goes on: each row is journaled
        assert not writer.flush(2)  # ...but not in DuckDB, and flush says so
        stats = writer.stats()
        assert stats["insert_failures"] >= 2 and stats["held"] + stats["queued"] == 3, stats
        assert _ids(db) == ["a0"]
        # one error line for the spell, however many retries; the metrics count every failed insert
        [line] = _requestlog_errors(caplog)
        assert "no space left on device" in line and "kept and retried" in line
        m = _metrics(db, writer)
        assert m["keel_requestlog_insert_failures"] == stats["insert_failures"] >= 2
        assert m["keel_requestlog_held_rows"] >= 1 and m["keel_requestlog_written"] == 1

        small_fs.free()
        assert writer.flush(20)
        assert _ids(db) == ["a0", "b0", "b1", "b2"]
        assert writer.stats()["held"] == 0 and writer.stats()["written"] == 4
        writer.submit(_rec("c0"))
        assert writer.flush(10)
    finally:
        writer.close()
    assert _ids(db) == ["a0", "b0", "b1", "b2", "c0"]
    assert list(journal.glob("*.jsonl")) == []  # every row in DuckDB: nothing left to replay
    assert writer.stats()["unjournaled"] == 0
    db.close()


def test_request_log_spill_on_a_full_disk(small_fs: SmallFs, caplog):  # noqa: F811
    """The queue is full while DuckDB refuses writes, and the spill file cannot take the overflow either:
    one error line and a counted metric, no exception into the request, and the rows (in the journal)
    are read back from there once space is freed."""
    data = small_fs.path / "data"
    db = Database(data / "keel.duckdb")
    journal = data / "journal"
    writer = RequestLogWriter(db, journal, RequestLogConfig(queue_size=1, flush_interval_s=0.05))
    writer.start()
    try:
        writer.submit(_sized("a0", 4096 + 64))
        assert writer.flush(10)
        db.execute("CHECKPOINT")
        small_fs.fill(leave=0)
        writer.submit(_rec("b0"))  # taken by the writer, whose insert fails: it holds b0
        deadline = time.monotonic() + 10
        while writer.stats()["insert_failures"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.stats()["held"] == 1
        writer.submit(_rec("b1"))  # waits in the queue (the writer takes nothing new while it holds)
        writer.submit(_rec("b2"))  # queue full: the spill file, which the full disk refuses
        writer.submit(_rec("b3"))
        stats = writer.stats()
        assert (stats["queued"], stats["spilled"], stats["spill_failures"], stats["held"]) == (1, 0, 2, 3)
        assert _ids(db) == ["a0"]
        spill_errors = [m for m in _requestlog_errors(caplog) if "spill file" in m]
        assert len(spill_errors) == 1 and "no space left on device" in spill_errors[0], spill_errors
        assert "b2" in spill_errors[0]
        # the spill file holds no torn line: nothing, or nothing at all
        assert not writer.spill_path.exists() or writer.spill_path.stat().st_size == 0
        assert _metrics(db, writer)["keel_requestlog_spill_failures"] == 2

        small_fs.free()
        assert writer.flush(20)
        assert _ids(db) == ["a0", "b0", "b1", "b2", "b3"]
        assert writer.stats()["held"] == 0
    finally:
        writer.close()
    assert list(journal.glob("*.jsonl")) == []
    # a restart has nothing to replay, and nothing is written twice
    again = RequestLogWriter(db, journal)
    assert again.start() == 0
    again.close()
    assert _ids(db) == ["a0", "b0", "b1", "b2", "b3"]
    db.close()


def _gateway(writer, metrics, answer: str, canned: bool):
    """The gateway's routes (with the platform's error handlers and metrics sink) over the real request
    log and one fake engine that streams ``answer`` in 1,000-character chunks (or answers it whole); with
    ``canned`` a router answers it without the engine."""
    import httpx
    from fastapi import FastAPI
    from keel.api.errors import install_error_handlers

    from serving.config import GatewayConfig
    from serving.engine.pool import Endpoint, EnginePool
    from serving.gateway.api import router as api_router
    from serving.gateway.chat import ChatService, RouteDecision
    from tests.serving.fakes import Keys

    rid = "chatcmpl-engine-1"

    def engine(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if not body.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
            return httpx.Response(200, json={"id": rid, "object": "chat.completion", "choices": [choice]})
        parts = [answer[i : i + 1000] for i in range(0, len(answer), 1000)]
        events = [
            {"id": rid, "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
            for t in parts
        ]
        events.append({"id": rid, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    async def router(messages):
        return RouteDecision(reply=answer)

    app = FastAPI()
    install_error_handlers(app)
    pool = EnginePool()
    pool.endpoints = [Endpoint(url="http://engine", version="v1")]
    client = httpx.AsyncClient(transport=httpx.MockTransport(engine))
    app.state.pool = pool
    app.state.chat = ChatService(
        pool, metrics.sink(writer), Keys(), GatewayConfig(), client, router=router if canned else None
    )
    app.include_router(api_router)
    return app


def _ask(app, stream: bool):
    import asyncio

    import httpx

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            body = {"model": "keel", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            return await c.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer good"})

    return asyncio.run(go())


@pytest.mark.parametrize("canned", [False, True], ids=["engine", "canned"])
def test_a_streamed_answer_cut_by_a_full_disk(small_fs: SmallFs, canned: bool):  # noqa: F811
    """The journal cannot take a streamed answer's row: the client gets the answer's chunks and then an
    error event (503 request_log_unavailable) in place of [DONE], never a stream that ends as if whole; a
    plain request gets the 503 as JSON; /metrics counts both. Once space is freed, the same requests
    stream to [DONE] and their rows are logged."""
    from keel.metrics import MetricSources, PlatformMetrics, parse

    from serving.engine.pool import EnginePool

    data = small_fs.path / "data"
    db = Database(data / "keel.duckdb")
    writer = RequestLogWriter(db, data / "journal", RequestLogConfig(flush_interval_s=0.05))
    writer.start()
    metrics = PlatformMetrics(MetricSources(db, writer, EnginePool()))
    answer = "x" * 20_000  # a row larger than a page: the full disk refuses its journal line
    app = _gateway(writer, metrics, answer, canned)
    try:
        small_fs.fill(leave=0)
        r = _ask(app, stream=True)
        assert r.status_code == 200  # the stream had begun
        events = [ln[6:] for ln in r.text.splitlines() if ln.startswith("data: ")]
        assert "[DONE]" not in events
        streamed = "".join(
            (c.get("delta") or {}).get("content") or "" for e in events[:-1] for c in json.loads(e)["choices"]
        )
        assert streamed == answer
        err = json.loads(events[-1])["error"]
        assert err["code"] == "request_log_unavailable" and err["type"] == "service_unavailable"
        assert "no space left on device" in err["message"]
        one_line(err["message"])

        r = _ask(app, stream=False)
        assert r.status_code == 503 and r.json()["error"]["code"] == "request_log_unavailable"

        fams = parse(metrics.render().decode())
        assert fams["keel_requestlog_unjournaled"].samples[0].value == 2
        statuses = {
            s.labels["status"]: s.value for s in fams["keel_requests"].samples if s.name.endswith("_total")
        }
        assert statuses == {"503": 2}
        assert writer.flush(10) and _ids(db) == []  # nothing half-recorded

        small_fs.free()
        r = _ask(app, stream=True)
        assert r.text.rstrip().endswith("data: [DONE]")
        assert _ask(app, stream=False).json()["choices"][0]["message"]["content"] == answer
        assert writer.flush(10) and len(_ids(db)) == 2
        assert parse(metrics.render().decode())["keel_requestlog_unjournaled"].samples[0].value == 2
    finally:
        writer.close()
        db.close()


def test_a_refused_record_is_reported_once():
    """The gateway's Recording: a sink that cannot journal (RecordError) fails the request once; leaving
    the stream's on_exit block does not submit (and count) the same refused row again."""

    class FullSink:
        calls = 0

        def submit(self, record: RequestRecord) -> None:
            self.calls += 1
            raise RecordError(f"request {record.request_id} not recorded: no space left on device")

    sink = FullSink()
    r = Recording(sink, _rec("s1"))
    with pytest.raises(RecordError), r.on_exit():
        r.submit()
    assert sink.calls == 1


def test_a_client_gone_mid_stream_on_a_full_disk():
    """A client that leaves mid-stream while the disk is full: its 499 row is refused (the sink logged and
    counted that), and the stream closes as for any client gone, without a second error in its place."""
    import asyncio

    class FullSink:
        calls = 0

        def submit(self, record: RequestRecord) -> None:
            self.calls += 1
            raise RecordError(f"request {record.request_id} not recorded: no space left on device")

    sink = FullSink()
    r = Recording(sink, _rec("s2"))

    async def events():
        with r.on_exit():
            yield b"first"
            r.submit()  # not reached: the client left after the first chunk
            yield b"[DONE]"

    async def leave_after_first():
        gen = events()
        assert await gen.__anext__() == b"first"
        await gen.aclose()  # what Starlette does when the client disconnects: must not raise

    asyncio.run(leave_after_first())
    assert sink.calls == 1 and r.record.status_code == 499


def test_a_refused_record_is_a_503_in_openai_shape():
    """What the platform's error handlers make of RecordError raised by a gateway route."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from keel.api.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/chat/completions")
    def chat() -> None:
        raise RecordError("request r1 not recorded: the request-log journal in /x: no space left on device")

    r = TestClient(app).post("/v1/chat/completions")
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "request_log_unavailable" and "no space left on device" in err["message"]


# ---- (c) a backup ---------------------------------------------------------------------------------------
def _data_dir(tmp_path: Path):
    data = tmp_path / "data"
    settings = load_settings(overrides=[f"data_dir={data}"])
    db = Database(settings.db_path)
    db.execute(
        "INSERT INTO requests (request_id, created_at, response_text) "
        "SELECT 'r' || range, now(), repeat('z', 200) FROM range(2000)"
    )
    return settings, db


def test_backup_on_a_full_disk(small_fs: SmallFs, tmp_path: Path):  # noqa: F811
    settings, db = _data_dir(tmp_path)
    dest = small_fs.path / "backups" / "bk"
    small_fs.fill(leave=64 * KIB)
    before = small_fs.available()
    with pytest.raises(BackupNoSpace) as e:
        backup(settings, db, dest)
    one_line(str(e.value))
    assert "no space left on device" in str(e.value) and e.value.status == 507
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # the temporary folder is gone
    assert small_fs.available() >= before
    assert db.fetchall("SELECT count(*) FROM requests")[0][0] == 2000  # the live database is untouched

    small_fs.free()
    summary = backup(settings, db, dest)
    assert summary.requests == 2000 and (dest / "backup.json").exists() and (dest / "keel.duckdb").exists()
    assert [p.name for p in dest.parent.iterdir()] == ["bk"]


def test_backup_cli_on_a_full_disk(small_fs: SmallFs, tmp_path: Path):  # noqa: F811
    settings, db = _data_dir(tmp_path)
    db.close()  # the CLI opens the data dir itself (no platform runs)
    for f in [settings.data_dir, *Path(settings.data_dir).rglob("*")]:  # owner-only, as the CLI wants it
        Path(f).chmod(0o700 if Path(f).is_dir() else 0o600)
    env = {**os.environ, "KEEL_DATA_DIR": str(settings.data_dir)}
    env.pop("KEEL_CONFIG", None)
    dest = small_fs.path / "bk"

    def keel_backup() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "keel", "backup", str(dest), "--no-checkpoints"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    small_fs.fill(leave=64 * KIB)
    out = keel_backup()
    assert out.returncode == 1, out.stderr
    err = out.stderr.strip()
    assert err.startswith("error: ") and "no space left on device" in err, err
    one_line(err)
    assert [p.name for p in small_fs.path.iterdir()] == [small_fs.ballast.name]

    small_fs.free()
    out = keel_backup()
    assert out.returncode == 0, out.stderr
    assert "backed up the data dir" in out.stdout and (dest / "backup.json").exists()


# ---- (d) a restore, and registering a checkpoint ---------------------------------------------------------
def _pages(folder: Path, skip: str = "") -> int:
    """Bytes the files under ``folder`` take on a tmpfs (whole pages), but the one named ``skip``."""
    page = os.statvfs(folder).f_bsize
    return sum(
        -(-f.stat().st_size // page) * page for f in folder.rglob("*") if f.is_file() and f.name != skip
    )


def _backup_with_a_checkpoint(tmp_path: Path) -> Path:
    """A backup of a data dir with 2,000 request rows and a registered 1 MiB checkpoint ``sft-1``."""
    settings, db = _data_dir(tmp_path)
    cp = write_checkpoint(
        settings.checkpoints_dir / "sft-1", _weights, Manifest(version="sft-1", parent="base", stage="sft")
    )
    registry.add(db, cp)
    backup(settings, db, tmp_path / "bk")
    db.close()
    return tmp_path / "bk"


def _state(settings) -> tuple:
    """What a data dir holds: its entries (all, hidden ones too), its request rows and registered versions."""
    entries = sorted(str(p.relative_to(settings.data_dir)) for p in Path(settings.data_dir).rglob("*"))
    if not settings.db_path.exists():
        return entries, None, None
    db = Database(settings.db_path)
    try:
        rows = db.fetchall("SELECT count(*) FROM requests")[0][0]
        versions = [r[0] for r in db.fetchall("SELECT version FROM checkpoints ORDER BY version")]
    finally:
        db.close()
    return entries, rows, versions


@pytest.mark.parametrize("previous", ["empty", "forced"])
@pytest.mark.parametrize("fills_at", ["checkpoint", "database", "database-update"])
def test_restore_on_a_full_disk(small_fs: SmallFs, tmp_path: Path, fills_at: str, previous: str):  # noqa: F811
    """A restore into a data dir whose disk fills: one line, every staged copy removed, the data dir as it
    was (empty, or with --force its previous state in place, not moved aside), and the restore succeeds
    once space is freed."""
    from keel.store.backup import restore

    bk = _backup_with_a_checkpoint(tmp_path)
    settings = load_settings(overrides=[f"data_dir={small_fs.path / 'data'}"])
    if previous == "forced":  # a data dir with a state of its own: 5 rows and checkpoint old-1
        db = Database(settings.db_path)
        db.execute("INSERT INTO requests (request_id, created_at) SELECT 'p' || range, now() FROM range(5)")
        old = write_checkpoint(
            settings.checkpoints_dir / "old-1", _weights, Manifest(version="old-1", stage="sft")
        )
        registry.add(db, old)
        db.close()
    else:
        settings.data_dir.mkdir()
    before = _state(settings)
    # the checkpoint: less room than its 1 MiB of weights; the database: room for every other part
    # (checkpoint, index, ...) and half of the database file
    db_size = (bk / "keel.duckdb").stat().st_size
    leave = {
        "checkpoint": 256 * KIB,
        "database": _pages(bk, skip="keel.duckdb") + db_size // 2,
        "database-update": _pages(bk, skip=MANIFEST),  # every copy fits; rewriting its paths does not
    }[fills_at]
    small_fs.fill(leave=leave)
    with pytest.raises(BackupNoSpace) as e:
        restore(settings, bk, force=previous == "forced")
    one_line(str(e.value))
    assert "no space left on device" in str(e.value) and "the data dir is as it was" in str(e.value)
    # it failed where the disk was meant to fill: copying the checkpoint, the database, or rewriting its paths
    where = {"checkpoint": "_stage_tree", "database": "_stage_file", "database-update": "_point_at_restored"}
    assert where[fills_at] in {f.name for f in traceback.extract_tb(e.value.__cause__.__traceback__)}
    assert e.value.status == 507
    assert _state(settings) == before  # nothing staged is left, nothing moved aside, nothing registered
    assert small_fs.available() >= leave - 64 * KIB

    small_fs.free()
    out = restore(settings, bk, force=previous == "forced")
    entries, rows, versions = _state(settings)
    assert (rows, versions) == (2000, ["sft-1"]) and out.requests == 2000
    assert load_manifest(settings.checkpoints_dir / "sft-1").version == "sft-1"
    assert not [p for p in entries if ".restore-" in p]
    if previous == "forced":  # the previous database moved aside; its own checkpoint folder stays
        assert (Path(out.moved_aside) / settings.db_path.name).exists()
        assert load_manifest(settings.checkpoints_dir / "old-1").version == "old-1"
    else:
        assert out.moved_aside is None


def test_restore_cli_on_a_full_disk(small_fs: SmallFs, tmp_path: Path):  # noqa: F811
    """`keel restore` into a data dir on a full disk: `error: ...` on one line, exit 1, nothing left in
    the data dir; once space is freed the same command restores."""
    bk = _backup_with_a_checkpoint(tmp_path)
    data = small_fs.path / "data"
    env = {**os.environ, "KEEL_DATA_DIR": str(data)}
    env.pop("KEEL_CONFIG", None)

    def keel_restore() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "keel", "restore", str(bk)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    small_fs.fill(leave=256 * KIB)
    out = keel_restore()
    assert out.returncode == 1, out.stderr
    err = out.stderr.strip()
    assert err.startswith("error: ") and "no space left on device" in err, err
    one_line(err)
    assert [p.name for p in data.rglob("*")] == []

    small_fs.free()
    out = keel_restore()
    assert out.returncode == 0, out.stderr
    assert "restored" in out.stdout and "2000 request rows" in out.stdout
    assert load_manifest(data / "checkpoints" / "sft-1").version == "sft-1"


def test_registering_a_checkpoint_on_a_full_disk(small_fs: SmallFs, tmp_path: Path):  # noqa: F811
    """The database's disk is full: registering a complete checkpoint folder is one line (507), nothing is
    registered, and the same registration succeeds once space is freed."""
    db = Database(small_fs.path / "keel.duckdb")
    db.execute("CHECKPOINT")  # an empty write-ahead log: the insert needs a page of its own
    cp = write_checkpoint(tmp_path / "sft-1", _weights, Manifest(version="sft-1", parent="base", stage="sft"))
    small_fs.fill(leave=0)
    with pytest.raises(registry.RegistryNoSpace) as e:
        registry.add(db, cp)
    one_line(str(e.value))
    assert "sft-1 not registered" in str(e.value) and "no space left on device" in str(e.value)
    assert e.value.status == 507
    assert db.fetchall("SELECT count(*) FROM checkpoints")[0][0] == 0

    small_fs.free()
    assert registry.add(db, cp).version == "sft-1"
    assert [r[0] for r in db.fetchall("SELECT version FROM checkpoints")] == ["sft-1"]
    db.close()


def test_converting_the_embedded_model_on_a_full_disk(small_fs: SmallFs):  # noqa: F811
    """`keel model prepare` (what `keel up` does first) on a data dir whose disk cannot hold the 542 MB of
    converted weights: `error: ...` on one line with the space it needs, exit 1, and no half-converted
    folder left behind (a leftover `base` without its manifest would be served or removed by the next start).
    The conversion on a disk with room is the session's `base_model_dir` fixture."""
    data = small_fs.path / "data"
    env = {**os.environ, "KEEL_DATA_DIR": str(data)}
    env.pop("KEEL_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-m", "keel", "model", "prepare"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    err = out.stderr.strip().splitlines()[-1]  # after the conversion's own progress bars
    assert err.startswith("error: ") and "no space left on device" in err and "MB free" in err, err
    checkpoints = data / "checkpoints"
    assert not checkpoints.exists() or [p.name for p in checkpoints.iterdir()] == []
    assert small_fs.available() > 7 * 1024 * KIB  # the partial weights were removed, not just hidden
