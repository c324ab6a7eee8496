"""Measure what metrics cost the trading path, and what a slow CloudWatch does to it.

1. `record()` per call (ns), against a plain `deque.append` of the same tuple measured in the same run: with a
   constant clock, with the wall clock (`datetime.now(UTC)`, what the bot clock costs live), with a dimension,
   and on the drop path (queue full).
2. A publisher into a sink that sleeps `--sink-seconds` (0.5 s) per put, fed from the event loop at two rates
   (below and above what that sink can take): record() latency percentiles against the same feed into an
   instant sink, points sent and dropped, and the delivered rate.
3. PutMetricData requests per 10,000 points through the real `CloudWatchSink` (a counting client stands in
   for boto3): typical points, and points with 1,000-character dimension values (split by request size),
   with the time the sink spends building the requests.

Usage: python scripts/bench_metrics.py [--calls 100000] [--seconds 2] [--sink-seconds 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.ops.cloudwatch import CloudWatchSink  # noqa: E402
from bot.ops.metrics import Dimension, MetricName, MetricPoint, MetricsPublisher, Unit  # noqa: E402

NOW = datetime.now(UTC)
REPEATS = 5


def constant_clock() -> datetime:
    return NOW


def wall_clock() -> datetime:
    return datetime.now(UTC)


class InstantSink:
    async def put(self, points: Sequence[MetricPoint]) -> None:
        del points


class SleepingSink:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def put(self, points: Sequence[MetricPoint]) -> None:
        del points
        await asyncio.sleep(self.seconds)


class CountingClient:
    """Stands in for the boto3 client: counts PutMetricData requests and their datums."""

    def __init__(self) -> None:
        self.datums: list[int] = []

    def put_metric_data(self, **kwargs: Any) -> None:
        self.datums.append(len(kwargs["MetricData"]))

    def describe_alarms(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    def put_metric_alarm(self, **kwargs: Any) -> Any:
        raise NotImplementedError


def best_ns_per_call(run: Callable[[int], None], calls: int) -> float:
    """Best of REPEATS runs of `run(calls)`, in ns per call."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        run(calls)
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def bench_record(calls: int) -> None:
    item = (MetricName.HEARTBEAT, 1.0, Unit.COUNT, NOW, {})
    dims = {Dimension.STRATEGY: "trend_pullback"}

    def reference(n: int) -> None:
        buffer: deque[object] = deque()
        append = buffer.append
        for _ in range(n):
            append(item)

    def calling(n: int) -> None:
        buffer: deque[object] = deque()

        def append(name: MetricName, value: float, unit: Unit, dimensions: object = None) -> None:
            buffer.append(item)

        for _ in range(n):
            append(MetricName.HEARTBEAT, 1.0, Unit.COUNT, None)

    def recording(
        clock: Callable[[], datetime], dimensions: dict[Dimension, str] | None = None
    ) -> Callable[[int], None]:
        def run(n: int) -> None:
            publisher = MetricsPublisher(InstantSink(), clock, queue_size=n + 1)
            record = publisher.record
            for _ in range(n):
                record(MetricName.HEARTBEAT, 1.0, Unit.COUNT, dimensions)

        return run

    def dropping(n: int) -> None:
        publisher = MetricsPublisher(InstantSink(), constant_clock, queue_size=1)
        record = publisher.record
        record(MetricName.HEARTBEAT, 1.0)
        for _ in range(n):
            record(MetricName.HEARTBEAT, 1.0)

    base = best_ns_per_call(reference, calls)
    print(f"1. record() cost, best of {REPEATS} x {calls:,} calls (loop overhead included in all)")
    print(f"   {'deque.append (reference)':<40} {base:8.0f} ns   1.0x")
    for label, run in (
        ("a function doing deque.append (the call)", calling),
        ("record(), constant clock", recording(constant_clock)),
        ("record(), datetime.now(UTC) clock", recording(wall_clock)),
        ("record(), wall clock + 1 dimension", recording(wall_clock, dims)),
        ("record(), queue full (drop path)", dropping),
    ):
        ns = best_ns_per_call(run, calls)
        print(f"   {label:<40} {ns:8.0f} ns {ns / base:6.1f}x")


class Feed:
    """What one feed measured: per-call ns, and the publisher's counts at the end of the feed (before stop)."""

    def __init__(self, latencies: list[int], sent: int, dropped: int, pending: int, elapsed: float) -> None:
        self.latencies, self.sent, self.dropped, self.pending, self.elapsed = latencies, sent, dropped, pending, elapsed

    def summary(self) -> str:
        v = self.latencies
        return f"{percentile(v, 0.5):5.0f} / {percentile(v, 0.99):6.0f} / {max(v):9,}"


async def feed(sink: Any | None, rate: int, seconds: float) -> Feed:
    """Record `rate` points/s for `seconds` from the loop in 10 ms bursts (no sink: a plain deque.append)."""
    publisher = MetricsPublisher(sink or InstantSink(), wall_clock, flush_seconds=0.1, timeout_seconds=5.0)
    publisher.start()
    reference: deque[object] = deque(maxlen=10_000)
    if sink is None:
        now = wall_clock

        def record(name: MetricName, value: float, unit: Unit) -> None:
            reference.append((name, value, unit, now(), {}))
    else:
        record = publisher.record  # type: ignore[assignment]
    latencies: list[int] = []
    burst = max(1, rate // 100)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(burst):
            t0 = time.perf_counter_ns()
            record(MetricName.SIGNAL_QUALITY, 60.0, Unit.NONE)
            latencies.append(time.perf_counter_ns() - t0)
        await asyncio.sleep(0.01)
    result = Feed(latencies, publisher.sent, publisher.dropped, publisher.pending, time.perf_counter() - start)
    await publisher.stop(timeout=0.1)
    return result


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


async def bench_slow_sink(seconds: float, sink_seconds: float) -> None:
    capacity = 1_000 / sink_seconds
    print(f"\n2. publisher into a sink sleeping {sink_seconds:g} s per put (capacity {capacity:,.0f} points/s),")
    print(f"   fed from the event loop for {seconds:g} s in 10 ms bursts; per-call ns p50 / p99 / max")
    for rate in (int(capacity / 2), int(capacity * 5)):
        reference = await feed(None, rate, seconds)
        fast = await feed(InstantSink(), rate, seconds)
        slow = await feed(SleepingSink(sink_seconds), rate, seconds)
        ratio = percentile(slow.latencies, 0.5) / percentile(fast.latencies, 0.5)
        print(f"   {rate:,} points/s:")
        print(f"     deque.append + clock (reference)  {reference.summary()}")
        print(f"     record(), instant sink            {fast.summary()}")
        print(f"     record(), {sink_seconds:g} s sink               {slow.summary()}   p50 slow/instant {ratio:.2f}")
        in_flight = len(slow.latencies) - slow.sent - slow.dropped - slow.pending
        counts = (
            f"recorded {len(slow.latencies):,}, sent {slow.sent:,}, in flight {in_flight:,}, dropped {slow.dropped:,}"
        )
        delivered = slow.sent / slow.elapsed
        print(f"     {sink_seconds:g} s sink: {counts}, waiting {slow.pending:,}; delivered {delivered:,.0f}/s")
    print("   (max: single calls that met a cyclic-GC pause or a preemption; gc.disable() removes the ms ones)")


async def bench_requests() -> None:
    print("\n3. PutMetricData requests per 10,000 points (CloudWatchSink, counting client)")
    now = datetime.now(UTC)
    cases = {
        "typical (1 short dimension)": {Dimension.STRATEGY: "trend_pullback"},
        "1,000-character dimension values": None,
    }
    for label, dims in cases.items():
        points = [
            MetricPoint(
                MetricName.SIGNALS_GENERATED,
                1.0,
                Unit.COUNT,
                now,
                dims if dims is not None else {Dimension.STRATEGY: f"{k:05d}" + "x" * 995},
            )
            for k in range(10_000)
        ]
        client = CountingClient()
        sink = CloudWatchSink(client, "TradingBot")
        start = time.perf_counter()
        sink.metric_data(points)
        build_us = (time.perf_counter() - start) / len(points) * 1e6
        await sink.put(points)
        sink.close()
        print(
            f"   {label:<34} {len(client.datums):3} requests (largest {max(client.datums):,} datums);"
            f" building them: {build_us:.1f} us per point, on the sink's thread"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--sink-seconds", type=float, default=0.5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the publisher's own warnings about the drops measured here
    started = time.perf_counter()
    bench_record(args.calls)
    asyncio.run(bench_slow_sink(args.seconds, args.sink_seconds))
    asyncio.run(bench_requests())
    print(f"\n(total {time.perf_counter() - started:.1f} s, Python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
