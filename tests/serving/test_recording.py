"""Each request's record reaches the log exactly once, whichever way the request ends."""

from __future__ import annotations

import asyncio

from serving.gateway.recording import Recording
from serving.records import RequestRecord
from tests.serving.fakes import Sink


def test_submit_is_once_and_fills_in_first():
    sink, rec = Sink(), RequestRecord(request_id="r1")
    filled = []
    r = Recording(sink, rec, finish=lambda: filled.append(1))
    r.submit()
    r.submit(500, "late")  # nothing changes once the row went
    assert sink.records == [rec] and filled == [1] and rec.status_code == 200 and rec.error is None


def test_a_client_that_leaves_mid_stream_is_a_499_row():
    sink, rec = Sink(), RequestRecord(request_id="r2")
    r = Recording(sink, rec, finish=lambda: setattr(rec, "response_text", "half"))

    async def events():
        with r.on_exit():
            yield b"first"
            r.submit()  # not reached: the client left after the first chunk
            yield b"[DONE]"

    async def leave_after_first():
        gen = events()
        assert await gen.__anext__() == b"first"
        await gen.aclose()  # what Starlette does when the client disconnects

    asyncio.run(leave_after_first())
    assert sink.records == [rec]
    assert (rec.status_code, rec.error, rec.response_text) == (499, "client closed the connection", "half")


def test_a_finished_stream_is_not_resubmitted_on_exit():
    sink, rec = Sink(), RequestRecord(request_id="r3")
    r = Recording(sink, rec)
    with r.on_exit():
        r.submit(502, "engine stream failed")
    assert sink.records == [rec] and rec.status_code == 502
