"""The metrics publisher: record() never blocks or raises; batches, drops, failures and recovery are counted."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest

from bot.ops.metrics import (
    PUT_METRIC_DATA_MAX_DATUMS,
    Dimension,
    MetricName,
    MetricPoint,
    MetricsPublisher,
    NullMetrics,
    Unit,
)

NOW = datetime(2025, 6, 9, 9, 30, tzinfo=UTC)
FAST = {"flush_seconds": 0.01, "timeout_seconds": 0.05}


def clock() -> datetime:
    return NOW


class RecordingSink:
    """Accept every batch; `mode` "fail" raises, "hang" never returns (until the mode changes back)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.calls = 0
        self.batches: list[list[MetricPoint]] = []
        self.in_flight = 0

    async def put(self, points: Sequence[MetricPoint]) -> None:
        self.calls += 1
        if self.mode == "fail":
            raise ConnectionError("Could not connect to the endpoint URL: https://monitoring.eu-west-1.amazonaws.com/")
        if self.mode == "hang":
            self.in_flight += 1
            try:
                await asyncio.Event().wait()
            finally:
                self.in_flight -= 1
        self.batches.append(list(points))

    def points(self, name: MetricName | None = None) -> list[MetricPoint]:
        return [p for b in self.batches for p in b if name is None or p.name is name]

    def recorded(self) -> list[MetricPoint]:
        return [p for p in self.points() if p.name is not MetricName.METRICS_DROPPED]

    def reported_drops(self) -> float:
        return sum(p.value for p in self.points(MetricName.METRICS_DROPPED))


async def until(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    """Let the loop run until `condition` holds (fail after `seconds`)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tradebot.metrics" and r.levelno >= logging.WARNING]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tradebot")


async def test_points_are_stamped_by_the_clock_and_sent_in_batches() -> None:
    sink = RecordingSink()
    publisher = MetricsPublisher(sink, clock, batch_size=100, **FAST)
    dims = {Dimension.STRATEGY: "trend_pullback"}
    for k in range(250):
        publisher.record(MetricName.SIGNAL_QUALITY, k, Unit.NONE, dims)
    dims[Dimension.STRATEGY] = "changed after recording"
    assert publisher.pending == 250 and publisher.sent == 0
    publisher.start()
    await until(lambda: publisher.sent == 250)
    await publisher.stop()
    assert [len(b) for b in sink.batches] == [100, 100, 50]
    first = sink.batches[0][0]
    assert first == MetricPoint(MetricName.SIGNAL_QUALITY, 0.0, Unit.NONE, NOW, {Dimension.STRATEGY: "trend_pullback"})
    assert [p.value for p in sink.recorded()] == [float(k) for k in range(250)]
    assert (publisher.dropped, publisher.pending, publisher.running) == (0, 0, False)


async def test_a_full_batch_is_sent_at_once_and_a_partial_one_waits_for_the_interval() -> None:
    sink = RecordingSink()
    publisher = MetricsPublisher(sink, clock, batch_size=10, flush_seconds=60, timeout_seconds=1)
    publisher.start()
    for _ in range(9):
        publisher.record(MetricName.HEARTBEAT, 1)
    await asyncio.sleep(0.05)
    assert sink.calls == 0  # 9 of 10: waits for the 60 s flush
    publisher.record(MetricName.HEARTBEAT, 1)
    await until(lambda: publisher.sent == 10)
    publisher.record(MetricName.HEARTBEAT, 1)
    await asyncio.sleep(0.05)
    assert publisher.pending == 1
    await publisher.stop()
    assert publisher.sent == 11 and sink.calls == 2


async def test_a_full_queue_drops_new_points_counts_reports_and_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    sink = RecordingSink()
    publisher = MetricsPublisher(sink, clock, queue_size=10, **FAST)
    for k in range(25):
        publisher.record(MetricName.DATA_ERRORS, k)
    assert (publisher.pending, publisher.dropped) == (10, 15)
    publisher.start()
    await until(lambda: publisher.sent == 10)
    await publisher.stop()
    assert [p.value for p in sink.recorded()] == [float(k) for k in range(10)]  # the first ten were kept
    assert sink.reported_drops() == 15
    [warning] = warnings(caplog)
    assert "queue of 10 points was full" in warning and "15 points dropped so far" in warning


async def test_record_never_raises_and_refuses_values_cloudwatch_would_reject() -> None:
    def broken_clock() -> datetime:
        raise RuntimeError("clock failed")

    publisher = MetricsPublisher(RecordingSink(), clock, **FAST)
    for bad in (math.nan, math.inf, -math.inf, 2.0**361, "not a number"):
        publisher.record(MetricName.DAILY_PNL, bad)  # type: ignore[arg-type]
    publisher.record(MetricName.DAILY_PNL, 2.0**360)  # the largest value accepted
    publisher.record(MetricName.HEARTBEAT, 1, dimensions=42)  # type: ignore[arg-type]
    assert (publisher.pending, publisher.dropped) == (1, 6)
    stamped = MetricsPublisher(RecordingSink(), broken_clock, **FAST)
    stamped.record(MetricName.HEARTBEAT, 1)
    assert (stamped.pending, stamped.dropped) == (0, 1)
    NullMetrics().record(MetricName.HEARTBEAT, 1)


async def test_a_failing_sink_drops_batches_logs_once_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    sink = RecordingSink("fail")
    # The sink fails at once; a put that a loaded machine delays past FAST's 50 ms would be another warning.
    publisher = MetricsPublisher(sink, clock, queue_size=20_000, flush_seconds=0.01, timeout_seconds=5.0)
    publisher.start()
    for _ in range(10_000):
        publisher.record(MetricName.SIGNAL_QUALITY, 70.0)
    assert publisher.pending + publisher.dropped == 10_000  # every call returned at once
    await until(lambda: sink.calls >= 10 and publisher.pending == 0)
    assert publisher.dropped == 10_000 and publisher.running
    assert all(len(b) <= PUT_METRIC_DATA_MAX_DATUMS for b in sink.batches)
    [warning] = warnings(caplog)  # ten failed puts, one warning
    assert "PutMetricData failed: ConnectionError: Could not connect" in warning
    assert "dropped so far" in warning and "Traceback" not in caplog.text

    sink.mode = "ok"
    publisher.record(MetricName.HEARTBEAT, 1)
    await until(lambda: publisher.sent == 1)
    await publisher.stop()
    assert sink.reported_drops() == 10_000  # the drops were published once CloudWatch took points again
    assert "sending again" in caplog.text and len(warnings(caplog)) == 1


async def test_a_hanging_sink_times_out_and_never_delays_record(caplog: pytest.LogCaptureFixture) -> None:
    sink = RecordingSink("hang")
    publisher = MetricsPublisher(sink, clock, queue_size=5_000, **FAST)
    publisher.start()
    publisher.record(MetricName.HEARTBEAT, 1)
    await until(lambda: sink.in_flight == 1)  # the publisher is stuck in a put
    for _ in range(10_000):
        publisher.record(MetricName.SIGNAL_QUALITY, 55.0)
    assert publisher.pending + publisher.dropped >= 10_000  # all 10,000 calls returned while the put hung
    assert publisher.dropped >= 5_000  # the queue holds 5,000
    await until(lambda: sink.calls >= 3)
    assert publisher.running
    [warning] = warnings(caplog)
    assert "did not finish within 0.05 s" in warning
    assert sink.in_flight <= 1  # timed-out puts were cancelled, not left piling up

    sink.mode = "ok"
    await until(lambda: publisher.pending == 0 and publisher.sent > 0)
    await publisher.stop()
    assert publisher.sent + publisher.dropped == 10_001
    assert sink.reported_drops() == publisher.dropped


async def test_stop_flushes_what_is_waiting() -> None:
    sink = RecordingSink()
    publisher = MetricsPublisher(sink, clock, flush_seconds=60, timeout_seconds=1)
    publisher.start()
    for _ in range(30):
        publisher.record(MetricName.TRADES_CLOSED, 1)
    await publisher.stop(timeout=2)
    assert (publisher.sent, publisher.pending, publisher.dropped, publisher.running) == (30, 0, 0, False)
    publisher.record(MetricName.TRADES_CLOSED, 1)  # after stop: counted, never sent
    assert (publisher.pending, publisher.dropped) == (0, 1)
    await publisher.stop()  # a second stop does nothing
    assert (publisher.sent, publisher.dropped) == (30, 1)


async def test_stop_gives_up_on_a_hanging_sink_within_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    sink = RecordingSink("hang")
    publisher = MetricsPublisher(sink, clock, flush_seconds=60, timeout_seconds=30)
    publisher.start()
    for _ in range(5):
        publisher.record(MetricName.HEARTBEAT, 1)
    await publisher.stop(timeout=0.1)
    assert (publisher.sent, publisher.dropped, publisher.running, sink.in_flight) == (0, 5, False, 0)
    assert "5 dropped in all" in caplog.text


async def test_stop_without_start_counts_what_was_never_sent() -> None:
    publisher = MetricsPublisher(RecordingSink(), clock, **FAST)
    publisher.record(MetricName.HEARTBEAT, 1)
    await publisher.stop()
    assert (publisher.sent, publisher.dropped, publisher.pending) == (0, 1, 0)


async def test_record_from_a_worker_thread_wakes_the_publisher() -> None:
    sink = RecordingSink()
    publisher = MetricsPublisher(sink, clock, batch_size=10, flush_seconds=60, timeout_seconds=1)
    publisher.start()

    def work() -> None:
        for _ in range(10):
            publisher.record(MetricName.DATA_ERRORS, 1)

    await asyncio.to_thread(work)
    await until(lambda: publisher.sent == 10)
    await publisher.stop()


def test_invalid_construction_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        MetricsPublisher(RecordingSink(), clock, batch_size=PUT_METRIC_DATA_MAX_DATUMS + 1)
    with pytest.raises(ValueError, match="queue_size"):
        MetricsPublisher(RecordingSink(), clock, queue_size=0)
    with pytest.raises(ValueError, match="positive"):
        MetricsPublisher(RecordingSink(), clock, flush_seconds=0)
