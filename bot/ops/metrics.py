"""Operational metrics: what the bot records (names, units, dimensions) and the port it records them through."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Protocol


class MetricName(StrEnum):
    """Every metric in the `TradingBot` namespace."""

    SIGNALS_GENERATED = "SignalsGenerated"  # per run: total (no dimension) and per Strategy
    HOURS_WITHOUT_SIGNALS = "HoursWithoutSignals"  # per run: market-day hours since a run last found a setup
    SIGNAL_QUALITY = "SignalQuality"  # one point per setup found
    APPROVALS_PENDING = "ApprovalsPending"  # heartbeat
    APPROVAL_LATENCY = "ApprovalLatency"  # seconds from offer to the approver's press
    ORDERS_FAILED = "OrdersFailed"
    CIRCUIT_OPEN = "CircuitOpen"  # 1 while the broker's circuit breaker is open, else 0 (heartbeat)
    TRADES_CLOSED = "TradesClosed"
    DAILY_PNL = "DailyPnL"  # realised P&L of the trading day, account currency (heartbeat)
    DRIFT_ALERTS = "DriftAlerts"  # per Severity
    SCAN_DURATION = "ScanDuration"  # seconds per run
    DATA_ERRORS = "DataErrors"  # symbols whose bars could not be fetched or used, per run
    SCAN_ERRORS = "ScanErrors"  # scheduled runs that failed outright
    HEARTBEAT = "Heartbeat"  # 1 every heartbeat_seconds while the event loop is alive
    METRICS_DROPPED = "MetricsDropped"  # points the publisher had to drop (queue full or CloudWatch failing)


class Unit(StrEnum):
    """CloudWatch units used here."""

    COUNT = "Count"
    SECONDS = "Seconds"
    NONE = "None"


class Dimension(StrEnum):
    STRATEGY = "Strategy"
    SEVERITY = "Severity"


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One value of one metric at one instant (UTC)."""

    name: MetricName
    value: float
    unit: Unit
    at: datetime
    dimensions: Mapping[Dimension, str] = field(default_factory=dict)


class Metrics(Protocol):
    """Record a metric point; never blocks and never raises (the trading path calls it)."""

    def record(
        self,
        name: MetricName,
        value: float,
        unit: Unit = Unit.COUNT,
        dimensions: Mapping[Dimension, str] | None = None,
    ) -> None: ...


class NullMetrics:
    """Metrics switched off: every point is discarded."""

    def record(
        self,
        name: MetricName,
        value: float,
        unit: Unit = Unit.COUNT,
        dimensions: Mapping[Dimension, str] | None = None,
    ) -> None:
        del name, value, unit, dimensions


# CloudWatch PutMetricData limits (API reference, PutMetricData: "Each request is also limited to no more than
# 1000 different metrics"; formerly 20). Values must lie within -2^360..2^360, and NaN and +-Infinity are
# rejected; one such value fails the whole request, so record() refuses them up front.
PUT_METRIC_DATA_MAX_DATUMS: Final = 1_000
MAX_ABS_VALUE: Final = 2.0**360
WARNING_INTERVAL_SECONDS: Final = 60.0  # at most one warning per minute about dropped points
DEFAULT_STOP_SECONDS: Final = 5.0
_NO_DIMENSIONS: Final[Mapping[Dimension, str]] = {}

log = logging.getLogger("tradebot.metrics")

_Queued = tuple[MetricName, float, Unit, datetime, Mapping[Dimension, str]]


class MetricsSink(Protocol):
    """Deliver a batch of points (to CloudWatch); may be slow or fail: the publisher bounds and absorbs both."""

    async def put(self, points: Sequence[MetricPoint]) -> None: ...


class MetricsPublisher:
    """Buffer points from `record()` and send them in batches from one background task.

    `record()` only appends to a bounded buffer: it never waits, never raises and never touches the network.
    Beyond `queue_size` waiting points a new point is dropped and counted; so is a batch whose `sink.put`
    fails or outlasts `timeout_seconds`. Drops are logged at most once a minute and published as
    `MetricsDropped` (the count since the last report). Safe to call `record()` from worker threads too.
    """

    __slots__ = (
        "_batch_size",
        "_buffer",
        "_dropped_reported",
        "_failing",
        "_flush_seconds",
        "_last_warning",
        "_limit",
        "_loop",
        "_loop_thread",
        "_monotonic",
        "_now",
        "_queue_drops",
        "_queue_drops_logged",
        "_queue_size",
        "_send_drops",
        "_sent",
        "_sink",
        "_stopping",
        "_task",
        "_timeout_seconds",
        "_wake",
        "_woken",
    )

    def __init__(
        self,
        sink: MetricsSink,
        now: Callable[[], datetime],
        *,
        queue_size: int = 10_000,
        flush_seconds: float = 10.0,
        timeout_seconds: float = 5.0,
        batch_size: int = PUT_METRIC_DATA_MAX_DATUMS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, was {queue_size}")
        if not 2 <= batch_size <= PUT_METRIC_DATA_MAX_DATUMS:
            raise ValueError(f"batch_size must be within 2..{PUT_METRIC_DATA_MAX_DATUMS}, was {batch_size}")
        if not (flush_seconds > 0 and timeout_seconds > 0):
            raise ValueError(
                f"flush_seconds and timeout_seconds must be positive, were {flush_seconds}, {timeout_seconds}"
            )
        self._sink = sink
        self._now = now
        self._queue_size = queue_size
        self._flush_seconds = flush_seconds
        self._timeout_seconds = timeout_seconds
        self._batch_size = batch_size
        self._monotonic = monotonic
        self._buffer: deque[_Queued] = deque()
        self._wake = asyncio.Event()
        self._woken = False  # the wake event was set for a full batch (cheaper to test than the event)
        self._limit = queue_size  # 0 once stopped
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing = False
        self._sent = 0
        self._queue_drops = 0  # refused by record(): queue full, closed, or not a finite number
        self._send_drops = 0  # lost with a failed or timed-out put, or still waiting when stopped
        self._queue_drops_logged = 0
        self._dropped_reported = 0
        self._last_warning: float | None = None

    @property
    def sink(self) -> MetricsSink:
        """The sink the batches go to."""
        return self._sink

    @property
    def dropped(self) -> int:
        """Points dropped so far (queue full, invalid value, failed or timed-out put, left over at stop)."""
        return self._queue_drops + self._send_drops

    @property
    def sent(self) -> int:
        """Recorded points the sink accepted (the publisher's own `MetricsDropped` points not included)."""
        return self._sent

    @property
    def pending(self) -> int:
        """Points waiting to be sent."""
        return len(self._buffer)

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._task is not None and not self._task.done()

    def record(
        self,
        name: MetricName,
        value: float,
        unit: Unit = Unit.COUNT,
        dimensions: Mapping[Dimension, str] | None = None,
    ) -> None:
        """Queue one point stamped with `now()`; drop and count it when the queue is full or the value invalid."""
        try:
            buffer = self._buffer
            size = len(buffer)
            value = float(value)
            if size >= self._limit or not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
                self._queue_drops += 1  # NaN fails both comparisons
                return
            buffer.append((name, value, unit, self._now(), dict(dimensions) if dimensions else _NO_DIMENSIONS))
            if size >= self._batch_size - 1 and not self._woken:
                self._woken = True
                self._wake_up()
        except Exception:  # the trading path must never see a metrics error
            self._queue_drops += 1

    def start(self) -> None:
        """Start the background task on the running event loop (once)."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._task = self._loop.create_task(self._run(), name="metrics-publisher")

    async def stop(self, timeout: float = DEFAULT_STOP_SECONDS) -> None:
        """Send what is waiting within `timeout` seconds, then end the task; later points are dropped."""
        if self._limit == 0:  # already stopped
            return
        task = self._task
        self._stopping = True
        if task is not None and not task.done():
            self._wake_up()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._limit = 0
        left = len(self._buffer)
        self._buffer.clear()
        self._send_drops += left
        log.log(
            logging.WARNING if left else logging.INFO,
            "CloudWatch metrics stopped: %d points sent, %d dropped in all (%d left unsent at stop)",
            self._sent,
            self.dropped,
            left,
        )

    def _wake_up(self) -> None:
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            self._wake.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to wake
            loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            stopping = self._stopping  # after a stop request: one more pass for points queued meanwhile
            await self._wait()
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not end publishing
                self._warn(f"publisher error {_reason(exc)}")
            if stopping:
                return

    async def _wait(self) -> None:
        """Wait `flush_seconds`, or less when a full batch waits (unless the last put failed) or on stop."""
        deadline = self._monotonic() + self._flush_seconds
        while not self._stopping:
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return
            self._wake.clear()
            if not self._failing and len(self._buffer) >= self._batch_size:
                return

    async def _flush(self) -> None:
        """Send the points waiting now, batch by batch, with the drops not yet reported; stop at a failure."""
        self._woken = False  # from here on, a newly full batch wakes the task again
        if self._queue_drops > self._queue_drops_logged:
            self._warn(f"the queue of {self._queue_size} points was full or a value was not a finite number")
            self._queue_drops_logged = self._queue_drops
        waiting = len(self._buffer)
        report = self.dropped - self._dropped_reported
        while waiting > 0 or report > 0:
            count = min(waiting, self._batch_size - (1 if report > 0 else 0))
            buffer = self._buffer
            batch = [MetricPoint(*buffer.popleft()) for _ in range(min(count, len(buffer)))]
            count = len(batch)
            waiting = min(waiting - count, len(buffer))
            if report > 0:
                batch.append(MetricPoint(MetricName.METRICS_DROPPED, float(report), Unit.COUNT, self._stamp()))
            if not await self._send(batch, count):
                return
            self._sent += count
            self._dropped_reported += report
            report = 0

    async def _send(self, batch: list[MetricPoint], recorded: int) -> bool:
        """Put one batch within the timeout; on failure count its recorded points as dropped and warn."""
        try:
            await asyncio.wait_for(self._sink.put(batch), self._timeout_seconds)
        except asyncio.CancelledError:
            self._send_drops += recorded
            raise
        except TimeoutError:
            reason = f"PutMetricData did not finish within {self._timeout_seconds:g} s"
        except Exception as exc:
            reason = f"PutMetricData failed: {_reason(exc)}"
        else:
            if self._failing:
                self._failing = False
                log.info("CloudWatch metrics: sending again; %d points dropped so far", self.dropped)
            return True
        self._failing = True
        self._send_drops += recorded
        self._warn(reason)
        return False

    def _stamp(self) -> datetime:
        try:
            return self._now()
        except Exception:  # the injected clock failed: the wall clock will do for this one point
            return datetime.now(UTC)

    def _warn(self, reason: str) -> None:
        """Log one warning with the running total, at most once per `WARNING_INTERVAL_SECONDS`."""
        now = self._monotonic()
        if self._last_warning is not None and now - self._last_warning < WARNING_INTERVAL_SECONDS:
            return
        self._last_warning = now
        log.warning(
            "CloudWatch metrics: %s; %d points dropped so far (at most one such warning a minute)",
            reason,
            self.dropped,
        )


def _reason(exc: BaseException) -> str:
    """Return `Type: message` on one line, at most 300 characters (no traceback)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:297] + "..."


def finite(value: float) -> bool:
    """Return whether CloudWatch accepts `value` (finite and within +-2^360)."""
    return math.isfinite(value) and abs(value) <= MAX_ABS_VALUE
