"""CloudWatch metrics: the sink and the bot's metrics built from `[metrics]`.

* `CloudWatchSink` turns `MetricPoint`s into PutMetricData requests within the API's limits and sends them on
  one dedicated thread (boto3 blocks), so a hung endpoint holds at most that thread, never the event loop or
  the default executor the scans use.
* `build_metrics` returns a started `MetricsPublisher`, or `NullMetrics` with one log line when metrics are
  disabled or there are no AWS credentials or region.

The alarms as code are in `bot.ops.alarms`. boto3 is imported lazily: a bot with metrics switched off never
loads it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote

from bot.ops.metrics import (
    DEFAULT_STOP_SECONDS,
    PUT_METRIC_DATA_MAX_DATUMS,
    WARNING_INTERVAL_SECONDS,
    MetricPoint,
    MetricsPublisher,
    NullMetrics,
    finite,
)
from data.aws import NO_REGION, client_config, error_message

if TYPE_CHECKING:
    from bot.config import MetricsSettings


log = logging.getLogger("tradebot.cloudwatch")


# PutMetricData limits (CloudWatch API reference, PutMetricData: "Each PutMetricData request is limited to 1 MB
# in size for HTTP POST requests ... no more than 1000 different metrics"; "up to 30 dimensions per metric";
# MetricDatum/Dimension: a dimension value is 1 to 1024 characters; time stamps "as much as two weeks before
# the current date, and as much as 2 hours after"). 1 MB is read as 10^6 bytes and the request size is
# estimated as the query protocol would encode it (the most verbose of botocore's protocols, before gzip).
MAX_DATUMS_PER_REQUEST: Final = PUT_METRIC_DATA_MAX_DATUMS


MAX_REQUEST_BYTES: Final = 1_000_000


MAX_DIMENSIONS: Final = 30


MAX_DIMENSION_VALUE_CHARS: Final = 1024


MAX_TIMESTAMP_AGE: Final = timedelta(days=14)


MAX_TIMESTAMP_AHEAD: Final = timedelta(hours=2)


# Client settings: short timeouts and one retry, so a hung endpoint frees the sink's thread within about
# 2 x (connect + read) seconds; the publisher gives up on a put after [metrics] timeout_seconds anyway.


ALARMS_READ_TIMEOUT_SECONDS: Final = 10.0


ALARMS_MAX_ATTEMPTS: Final = 3


NO_CREDENTIALS: Final = "no AWS credentials found"


IMDS_CREDENTIALS_METHOD: Final = "iam-role"  # botocore's name for credentials from the instance role


# Query-protocol key overhead of one datum: "MetricData.member.1000.<Field>=" plus "&" for each field.
_DATUM_KEY_BYTES: Final = sum(
    len(f"&MetricData.member.1000.{k}=") for k in ("MetricName", "Value", "Unit", "Timestamp")
)


_DIMENSION_KEY_BYTES: Final = sum(len(f"&MetricData.member.1000.Dimensions.member.30.{k}=") for k in ("Name", "Value"))


_VALUE_BYTES: Final = 32  # repr of a double, percent-encoded


_TIMESTAMP_BYTES: Final = 48  # ISO 8601 with microseconds and offset, percent-encoded


_REQUEST_HEADROOM_BYTES: Final = 1024


class CloudWatchClient(Protocol):
    """The boto3 CloudWatch client methods used here."""

    def put_metric_data(self, **kwargs: Any) -> Any: ...

    def describe_alarms(self, **kwargs: Any) -> Any: ...

    def put_metric_alarm(self, **kwargs: Any) -> Any: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=4096)  # names, units and dimension values repeat from point to point
def _encoded_len(text: str) -> int:
    return len(quote(text, safe="-_.~"))


def _datum_bytes(datum: Mapping[str, Any]) -> int:
    """Return an upper bound of one datum's size in a query-encoded PutMetricData request."""
    size = _DATUM_KEY_BYTES + _VALUE_BYTES + _TIMESTAMP_BYTES
    size += _encoded_len(datum["MetricName"]) + _encoded_len(datum["Unit"])
    for dimension in datum["Dimensions"]:
        size += _DIMENSION_KEY_BYTES + _encoded_len(dimension["Name"]) + _encoded_len(dimension["Value"])
    return size


def _acceptable(point: MetricPoint, at: datetime, oldest: datetime, latest: datetime) -> bool:
    """Return whether CloudWatch would accept the point at `at` (one bad datum fails a whole request)."""
    if not finite(point.value) or not oldest <= at <= latest:
        return False
    dimensions = point.dimensions
    return len(dimensions) <= MAX_DIMENSIONS and all(
        0 < len(value) <= MAX_DIMENSION_VALUE_CHARS for value in dimensions.values()
    )


class CloudWatchSink:
    """Send metric points to CloudWatch with PutMetricData, split within the per-request limits.

    Points CloudWatch would reject (a time stamp over two weeks old or over two hours ahead of the real
    time, e.g. from a replayed bot clock; a non-finite value; an empty or over-long dimension value) are
    left out and counted in `rejected`, with at most one warning a minute, so they cannot fail a request.
    """

    def __init__(
        self,
        client: CloudWatchClient,
        namespace: str,
        *,
        wall_clock: Callable[[], datetime] = _utc_now,
        executor: Executor | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._wall_clock = wall_clock
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudwatch")
        self._monotonic = monotonic
        self._requests = 0
        self._rejected = 0
        self._rejected_logged = 0
        self._last_warning: float | None = None

    @property
    def namespace(self) -> str:
        """The CloudWatch namespace the points go to."""
        return self._namespace

    @property
    def requests(self) -> int:
        """PutMetricData requests that succeeded."""
        return self._requests

    @property
    def rejected(self) -> int:
        """Points left out because CloudWatch would reject them."""
        return self._rejected

    async def put(self, points: Sequence[MetricPoint]) -> None:
        """Send the points in as few PutMetricData requests as the limits allow (botocore errors propagate)."""
        loop = asyncio.get_running_loop()
        batches = await loop.run_in_executor(self._executor, self.metric_data, points)
        self._warn_rejected()
        for data in batches:
            call = functools.partial(self._client.put_metric_data, Namespace=self._namespace, MetricData=data)
            await loop.run_in_executor(self._executor, call)
            self._requests += 1

    def metric_data(self, points: Sequence[MetricPoint]) -> list[list[dict[str, Any]]]:
        """Return the MetricData lists of the requests for `points`, each within the count and size limits."""
        wall = self._wall_clock()
        oldest, latest = wall - MAX_TIMESTAMP_AGE, wall + MAX_TIMESTAMP_AHEAD
        overhead = _REQUEST_HEADROOM_BYTES + _encoded_len(self._namespace)
        batches: list[list[dict[str, Any]]] = []
        batch: list[dict[str, Any]] = []
        size = overhead
        for point in points:
            at = point.at if point.at.tzinfo is not None else point.at.replace(tzinfo=UTC)
            if not _acceptable(point, at, oldest, latest):
                self._rejected += 1
                continue
            datum = {
                "MetricName": str(point.name),
                "Value": float(point.value),
                "Unit": str(point.unit),
                "Timestamp": at,
                "Dimensions": [{"Name": str(k), "Value": v} for k, v in sorted(point.dimensions.items())],
            }
            datum_size = _datum_bytes(datum)
            if batch and (len(batch) >= MAX_DATUMS_PER_REQUEST or size + datum_size > MAX_REQUEST_BYTES):
                batches.append(batch)
                batch, size = [], overhead
            batch.append(datum)
            size += datum_size
        if batch:
            batches.append(batch)
        return batches

    def close(self) -> None:
        """Release the sink's thread without waiting for a call in flight."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _warn_rejected(self) -> None:
        if self._rejected <= self._rejected_logged:
            return
        now = self._monotonic()
        if self._last_warning is not None and now - self._last_warning < WARNING_INTERVAL_SECONDS:
            return
        self._last_warning = now
        self._rejected_logged = self._rejected
        log.warning(
            "CloudWatch metrics: %d points left out so far: CloudWatch rejects time stamps over two weeks old or"
            " over two hours ahead (is the bot clock replaying the past?), non-finite values and empty dimensions",
            self._rejected,
        )


def _instance_region() -> str | None:
    """Return the EC2 instance's region from the instance metadata service, or None."""
    from botocore.utils import InstanceMetadataRegionFetcher  # noqa: PLC0415

    region = InstanceMetadataRegionFetcher(timeout=1.0, num_attempts=1).retrieve_region()
    return region if isinstance(region, str) and region else None


def connect(region: str | None, config: Any) -> tuple[CloudWatchClient, str] | str:
    """Return a CloudWatch client and its region, or why there is none (blocking: may ask the EC2 metadata).

    Region: `region`, else AWS_REGION, else the SDK's (AWS_DEFAULT_REGION, the config file), else the
    instance's own region when the credentials come from the instance role.
    """
    import boto3  # noqa: PLC0415 - the AWS SDK only when metrics are on

    session = boto3.session.Session()
    credentials = session.get_credentials()
    if credentials is None:
        return NO_CREDENTIALS
    region = region or os.environ.get("AWS_REGION") or session.region_name
    if not region and getattr(credentials, "method", None) == IMDS_CREDENTIALS_METHOD:
        region = _instance_region()
    if not region:
        return NO_REGION
    return session.client("cloudwatch", region_name=region, config=config), region


async def build_metrics(settings: MetricsSettings, now: Callable[[], datetime]) -> MetricsPublisher | NullMetrics:
    """Return a started publisher to CloudWatch, or `NullMetrics` with one log line saying why not.

    The credential lookup (which may ask the EC2 metadata service) runs on a worker thread. Call it from
    the running event loop; stop the result with `close_metrics`.
    """
    if not settings.enabled:
        log.info("CloudWatch metrics off: disabled in the config ([metrics] enabled = false)")
        return NullMetrics()
    try:
        found = await asyncio.to_thread(connect, settings.region, client_config(settings.timeout_seconds))
    except Exception as exc:  # a broken AWS config file or profile must not stop the bot
        log.warning("CloudWatch metrics off: %s", error_message(exc))
        return NullMetrics()
    if isinstance(found, str):
        log.warning("CloudWatch metrics off: %s", found)
        return NullMetrics()
    client, region = found
    publisher = MetricsPublisher(
        CloudWatchSink(client, settings.namespace),
        now,
        queue_size=settings.queue_size,
        flush_seconds=settings.flush_seconds,
        timeout_seconds=settings.timeout_seconds,
    )
    publisher.start()
    log.info(
        "CloudWatch metrics on: namespace %s in %s, sent every %g s", settings.namespace, region, settings.flush_seconds
    )
    return publisher


async def close_metrics(metrics: object, timeout: float = DEFAULT_STOP_SECONDS) -> None:
    """Flush and stop what `build_metrics` returned (nothing to do for `NullMetrics`)."""
    if not isinstance(metrics, MetricsPublisher):
        return
    await metrics.stop(timeout)
    if isinstance(metrics.sink, CloudWatchSink):
        metrics.sink.close()
