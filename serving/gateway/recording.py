"""A request's record and its one submission to the request log.

Every path a request can end on (an answer, a refusal, an engine failure, a client that left) submits the
record exactly once, and the row is journaled before the answer's end reaches the client. The gateway
calls ``submit`` where the answer completes; ``on_exit`` covers every other way out (a client gone
mid-stream cancels the response generator: its row then says 499).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from serving.records import RecordError, RecordSink, RequestRecord

GONE = (499, "client closed the connection")


class Recording:
    def __init__(self, sink: RecordSink, record: RequestRecord, finish: Callable[[], None] | None = None):
        self.sink, self.record = sink, record
        self.finish = finish  # fills in what the stream produced so far (texts, timings) before the row goes
        self.submitted = False

    def submit(self, status: int | None = None, error: str | None = None) -> None:
        """Journal the record now (once; a second call does nothing), with ``status``/``error`` if given."""
        if self.submitted:
            return
        if self.finish is not None:
            self.finish()
        if status is not None:
            self.record.status_code, self.record.error = status, error
        self.submitted = True  # once, even if the sink refuses it (RecordError): a retry would fare no better
        self.sink.submit(self.record)

    @contextmanager
    def on_exit(self, status: int = GONE[0], error: str = GONE[1]) -> Iterator[Recording]:
        """Submit with ``status`` when the block is left without a submission (the client went away).
        Left by an exception (the client's cancel), a sink's refusal of the row (RecordError: logged and
        counted by the sink) does not replace that exception."""
        try:
            yield self
        except BaseException:
            with suppress(RecordError):
                self.submit(status, error)
            raise
        self.submit(status, error)
