"""The background embedding rate: recent batches, across passes, without the gaps between passes."""

from __future__ import annotations

import pytest

from serving.rag.eta import RateMeter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rate_is_measured_over_recent_embedding_time_only():
    clock = Clock()
    m = RateMeter(window_s=60.0, clock=clock)
    assert m.rate() is None and m.eta(100) is None
    m.start_pass()
    for _ in range(10):  # 10 chunks every 5 s: 2 chunks/s
        clock.t += 5.0
        m.batch(10)
    assert m.rate() == pytest.approx(2.0)
    assert m.eta(100) == pytest.approx(50.0)
    clock.t += 3600.0  # held for an hour (training): not embedding time
    m.start_pass()
    clock.t += 5.0
    m.batch(10)
    assert m.rate() == pytest.approx(2.0)
    # the machine gets busier: after a window of slower batches the old rate is forgotten
    for _ in range(20):
        clock.t += 10.0
        m.batch(10)
    assert m.rate() == pytest.approx(1.0, rel=0.1)
    assert m.eta(0) == 0.0


def test_first_batch_of_a_pass_counts_from_the_pass_start():
    clock = Clock()
    m = RateMeter(clock=clock)
    m.batch(10)  # no pass started: nothing to measure against
    assert m.rate() is None
    m.start_pass()
    clock.t += 4.0
    m.batch(8)
    assert m.rate() == pytest.approx(2.0)
