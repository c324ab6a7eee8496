"""CloudWatch adapters: the metrics sink, the bot's metrics built from `[metrics]`, and the alarms as code.

* `CloudWatchSink` turns `MetricPoint`s into PutMetricData requests within the API's limits and sends them on
  one dedicated thread (boto3 blocks), so a hung endpoint holds at most that thread, never the event loop or
  the default executor the scans use.
* `build_metrics` returns a started `MetricsPublisher`, or `NullMetrics` with one log line when metrics are
  disabled or there are no AWS credentials or region.
* `alarm_specs` / `apply_alarms` / `run_alarms` define the `tradebot-` alarms and create or update only the
  ones that differ (`tradebot ops alarms --dry-run|--apply`).

boto3 is imported lazily: a bot with metrics switched off never loads it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote

from bot.ops.metrics import (
    DEFAULT_STOP_SECONDS,
    PUT_METRIC_DATA_MAX_DATUMS,
    WARNING_INTERVAL_SECONDS,
    Dimension,
    MetricName,
    MetricPoint,
    MetricsPublisher,
    NullMetrics,
    finite,
)

if TYPE_CHECKING:
    from bot.config import AlarmSettings, MetricsSettings, Settings

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
CONNECT_TIMEOUT_SECONDS: Final = 2.0
MAX_ATTEMPTS: Final = 2  # botocore `total_max_attempts`: the first call and one retry
ALARMS_READ_TIMEOUT_SECONDS: Final = 10.0
ALARMS_MAX_ATTEMPTS: Final = 3

NO_CREDENTIALS: Final = "no AWS credentials found"
NO_REGION: Final = "no AWS region (set [metrics] region, AWS_REGION or AWS_DEFAULT_REGION)"
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


def client_config(read_timeout: float, max_attempts: int = MAX_ATTEMPTS) -> Any:
    """Return a botocore `Config` with short timeouts and few retries."""
    from botocore.config import Config  # noqa: PLC0415 - the AWS SDK only when metrics are on

    return Config(
        connect_timeout=min(CONNECT_TIMEOUT_SECONDS, read_timeout),
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=2,
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
        log.warning("CloudWatch metrics off: %s", aws_error_message(exc))
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


# ---------------------------------------------------------------------------------------------- alarms

ALARM_PREFIX: Final = "tradebot-"
NO_SIGNAL_HOURS: Final = 24  # market-day hours without a setup (published by every run) before no-signals alarms
AGENT_NAMESPACE: Final = "CWAgent"
AGENT_MEMORY_METRIC: Final = "mem_used_percent"
AGENT_DISK_METRIC: Final = "disk_used_percent"
AGENT_INSTANCE_DIMENSION: Final = "InstanceId"
AGENT_PATH_DIMENSION: Final = "path"
RUNBOOK: Final = "ops/runbook.md"
DATA_ERRORS_PER_HOUR: Final = 12  # e.g. one symbol failing every 5-minute run for an hour, or two whole-market runs
AGENT_PERIOD_SECONDS: Final = 300
AGENT_PERIODS: Final = 3


class Alarm(StrEnum):
    """The alarms, by their name after `tradebot-`, which is also their runbook anchor."""

    HEARTBEAT_MISSING = "heartbeat-missing"
    DRIFT_CRITICAL = "drift-critical"
    ORDERS_FAILED = "orders-failed"
    CIRCUIT_OPEN = "circuit-open"
    NO_SIGNALS = "no-signals"
    SCAN_ERRORS = "scan-errors"
    DATA_ERRORS = "data-errors"
    MEMORY_HIGH = "memory-high"
    DISK_HIGH = "disk-high"

    @property
    def alarm_name(self) -> str:
        """The CloudWatch alarm name."""
        return ALARM_PREFIX + self.value

    @property
    def runbook(self) -> str:
        """Where the runbook explains this alarm."""
        return f"{RUNBOOK}#{self.value}"


class Statistic(StrEnum):
    SUM = "Sum"
    MAXIMUM = "Maximum"
    AVERAGE = "Average"


class Comparison(StrEnum):
    GREATER_OR_EQUAL = "GreaterThanOrEqualToThreshold"
    LESS = "LessThanThreshold"

    @property
    def symbol(self) -> str:
        """The operator as a symbol, for the plan."""
        return ">=" if self is Comparison.GREATER_OR_EQUAL else "<"


class MissingData(StrEnum):
    BREACHING = "breaching"
    NOT_BREACHING = "notBreaching"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    """One CloudWatch metric alarm as `put_metric_alarm` sets it."""

    alarm: Alarm
    description: str
    namespace: str
    metric: str
    statistic: Statistic
    comparison: Comparison
    threshold: float
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    missing_data: MissingData
    dimensions: tuple[tuple[str, str], ...] = ()
    actions: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The alarm name (`tradebot-...`)."""
        return self.alarm.alarm_name

    @property
    def metric_label(self) -> str:
        """`Namespace/Metric{Dim=value,...}` for the plan."""
        dims = ",".join(f"{k}={v}" for k, v in self.dimensions)
        return f"{self.namespace}/{self.metric}" + (f"{{{dims}}}" if dims else "")

    @property
    def condition(self) -> str:
        """The alarm condition in words, for the plan."""
        return (
            f"{self.statistic} {self.comparison.symbol} {self.threshold:g} in {self.datapoints_to_alarm} of "
            f"{self.evaluation_periods} x {self.period} s; missing data {self.missing_data}"
        )

    def request(self) -> dict[str, Any]:
        """Return the `put_metric_alarm` arguments (every field compared by `apply_alarms`)."""
        return {
            "AlarmName": self.name,
            "AlarmDescription": self.description,
            "ActionsEnabled": True,
            "AlarmActions": list(self.actions),
            "OKActions": list(self.actions),
            "InsufficientDataActions": [],
            "Namespace": self.namespace,
            "MetricName": self.metric,
            "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions],
            "Statistic": str(self.statistic),
            "Period": self.period,
            "EvaluationPeriods": self.evaluation_periods,
            "DatapointsToAlarm": self.datapoints_to_alarm,
            "Threshold": float(self.threshold),
            "ComparisonOperator": str(self.comparison),
            "TreatMissingData": str(self.missing_data),
        }


@dataclass(frozen=True, slots=True)
class SkippedAlarm:
    """An alarm left out of the plan, and why."""

    alarm: Alarm
    reason: str


_DESCRIPTIONS: Final[Mapping[Alarm, str]] = {
    Alarm.HEARTBEAT_MISSING: "No heartbeat from the bot for 5 minutes: the process is down or hung, or cannot"
    " reach CloudWatch.",
    Alarm.DRIFT_CRITICAL: "The drift watch raised a CRITICAL alert: a strategy's live results fell far below its"
    " validated baseline.",
    Alarm.ORDERS_FAILED: "{failed_orders} or more orders failed at the broker within 15 minutes.",
    Alarm.CIRCUIT_OPEN: "The broker circuit breaker has been open for 2 minutes: orders are not reaching the broker.",
    Alarm.NO_SIGNALS: "Scans have found no signal in 24 hours of market days (weekends and holidays of every"
    " watched market do not count).",
    Alarm.SCAN_ERRORS: "A scheduled scan failed outright within the last 15 minutes.",
    Alarm.DATA_ERRORS: "Market data failed for {data_errors} or more symbol fetches within an hour: the data provider"
    " is failing or a symbol is broken.",
    Alarm.MEMORY_HIGH: "Memory use on {instance} averaged {memory:g} % or more for 15 minutes.",
    Alarm.DISK_HIGH: "Disk {path} on {instance} averaged {disk:g} % full or more for 15 minutes.",
}

_Dimensions = tuple[tuple[str, str], ...]


def alarm_specs(settings: AlarmSettings, namespace: str) -> list[AlarmSpec]:
    """Return the alarms for the bot's metrics in `namespace` (memory and disk only with an instance id)."""
    ge, lt = Comparison.GREATER_OR_EQUAL, Comparison.LESS
    total, maximum, average = Statistic.SUM, Statistic.MAXIMUM, Statistic.AVERAGE
    breaching, not_breaching, missing = MissingData.BREACHING, MissingData.NOT_BREACHING, MissingData.MISSING
    critical: _Dimensions = ((Dimension.SEVERITY.value, "CRITICAL"),)
    # alarm, namespace, metric, statistic, comparison, threshold, period (s), periods, missing data, dimensions
    rows: list[tuple[Alarm, str, str, Statistic, Comparison, float, int, int, MissingData, _Dimensions]] = [
        (Alarm.HEARTBEAT_MISSING, namespace, MetricName.HEARTBEAT, total, lt, 1, 60, 5, breaching, ()),
        (Alarm.DRIFT_CRITICAL, namespace, MetricName.DRIFT_ALERTS, total, ge, 1, 300, 1, not_breaching, critical),
        (Alarm.ORDERS_FAILED, namespace, MetricName.ORDERS_FAILED, total, ge, settings.failed_orders, 900, 1,
         not_breaching, ()),
        (Alarm.CIRCUIT_OPEN, namespace, MetricName.CIRCUIT_OPEN, maximum, ge, 1, 60, 2, not_breaching, ()),
        (Alarm.NO_SIGNALS, namespace, MetricName.HOURS_WITHOUT_SIGNALS, maximum, ge, NO_SIGNAL_HOURS, 3600, 1,
         not_breaching, ()),
        (Alarm.SCAN_ERRORS, namespace, MetricName.SCAN_ERRORS, total, ge, 1, 900, 1, not_breaching, ()),
        (Alarm.DATA_ERRORS, namespace, MetricName.DATA_ERRORS, total, ge, DATA_ERRORS_PER_HOUR, 3600, 1,
         not_breaching, ()),
    ]  # fmt: skip
    instance = settings.instance_id
    if instance:
        on_instance: _Dimensions = ((AGENT_INSTANCE_DIMENSION, instance),)
        on_disk: _Dimensions = (*on_instance, (AGENT_PATH_DIMENSION, settings.disk_path))
        agent_period, agent_periods = AGENT_PERIOD_SECONDS, AGENT_PERIODS
        rows += [
            (Alarm.MEMORY_HIGH, AGENT_NAMESPACE, AGENT_MEMORY_METRIC, average, ge, settings.memory_percent,
             agent_period, agent_periods, missing, on_instance),
            (Alarm.DISK_HIGH, AGENT_NAMESPACE, AGENT_DISK_METRIC, average, ge, settings.disk_percent,
             agent_period, agent_periods, missing, on_disk),
        ]  # fmt: skip
    facts = {
        "failed_orders": settings.failed_orders,
        "data_errors": DATA_ERRORS_PER_HOUR,
        "instance": instance,
        "memory": settings.memory_percent,
        "disk": settings.disk_percent,
        "path": settings.disk_path,
    }
    actions = (settings.sns_topic_arn,) if settings.sns_topic_arn else ()
    return [
        AlarmSpec(
            alarm=alarm,
            description=f"{_DESCRIPTIONS[alarm].format(**facts)} See {alarm.runbook}",
            namespace=space,
            metric=str(metric),
            statistic=statistic,
            comparison=comparison,
            threshold=float(threshold),
            period=period,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            missing_data=missing_data,
            dimensions=tuple(sorted(dimensions)),
            actions=actions,
        )
        for alarm, space, metric, statistic, comparison, threshold, period, periods, missing_data, dimensions in rows
    ]


def skipped_alarms(settings: AlarmSettings) -> list[SkippedAlarm]:
    """Return the alarms `alarm_specs` leaves out with these settings, and why."""
    if settings.instance_id:
        return []
    reason = "[alarms] instance_id is not set (the CloudWatch agent reports memory and disk per instance)"
    return [SkippedAlarm(Alarm.MEMORY_HIGH, reason), SkippedAlarm(Alarm.DISK_HIGH, reason)]


class AlarmAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    STALE = "stale"  # a `tradebot-` alarm no spec names any more: reported, never deleted
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """What `apply_alarms` did (or, in a dry run, would do) to one alarm."""

    action: AlarmAction
    name: str
    spec: AlarmSpec | None = None
    differences: tuple[str, ...] = ()  # for UPDATE: "Field: old -> new"
    note: str = ""


_UNMANAGED_FIELDS: Final = (
    "Unit",
    "ExtendedStatistic",
    "ThresholdMetricId",
    "EvaluateLowSampleCountPercentile",
    "Metrics",
)


def _normalised(key: str, value: Any) -> Any:
    if key in ("AlarmActions", "OKActions", "InsufficientDataActions"):
        return tuple(sorted(value or ()))
    if key == "Dimensions":
        return tuple(sorted((d["Name"], d["Value"]) for d in value or ()))
    if key == "Threshold":
        return None if value is None else float(value)
    return value


def alarm_differences(spec: AlarmSpec, existing: Mapping[str, Any]) -> tuple[str, ...]:
    """Return `Field: old -> new` for every field of `spec` the existing alarm does not match."""
    found = dict(existing)
    found.setdefault("DatapointsToAlarm", found.get("EvaluationPeriods"))
    found.setdefault("ActionsEnabled", True)
    differences = []
    for key, wanted in spec.request().items():
        have = _normalised(key, found.get(key))
        if have != _normalised(key, wanted):
            differences.append(f"{key}: {have!r} -> {_normalised(key, wanted)!r}")
    differences += [f"{key}: {found[key]!r} -> None" for key in _UNMANAGED_FIELDS if found.get(key)]
    return tuple(differences)


def existing_alarms(client: CloudWatchClient) -> dict[str, dict[str, Any]]:
    """Return the account's `tradebot-` metric alarms by name."""
    alarms: dict[str, dict[str, Any]] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"AlarmNamePrefix": ALARM_PREFIX, "AlarmTypes": ["MetricAlarm"], "MaxRecords": 100}
        if token:
            kwargs["NextToken"] = token
        page = client.describe_alarms(**kwargs)
        for alarm in page.get("MetricAlarms", []):
            alarms[alarm["AlarmName"]] = alarm
        token = page.get("NextToken")
        if not token:
            return alarms


def apply_alarms(client: CloudWatchClient, specs: Sequence[AlarmSpec], dry_run: bool) -> list[AlarmChange]:
    """Create or update the alarms that differ from `specs` (none in a dry run) and report every one."""
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"alarm names must be unique, were {', '.join(sorted(names))}")
    existing = existing_alarms(client)
    changes: list[AlarmChange] = []
    for spec in specs:
        current = existing.get(spec.name)
        differences = () if current is None else alarm_differences(spec, current)
        action = AlarmAction.UPDATE if differences else AlarmAction.UNCHANGED
        if current is None:
            action = AlarmAction.CREATE
        if action is not AlarmAction.UNCHANGED and not dry_run:
            client.put_metric_alarm(**spec.request())
        changes.append(AlarmChange(action, spec.name, spec, differences))
    for name in sorted(set(existing) - set(names)):
        changes.append(AlarmChange(AlarmAction.STALE, name, note="no longer defined here; left in place"))
    return changes


def format_plan(changes: Sequence[AlarmChange], dry_run: bool) -> str:
    """Return the plan as a table: action, alarm, metric, condition, SNS."""
    rows = [("ACTION", "ALARM", "METRIC", "CONDITION", "SNS")]
    for change in changes:
        spec = change.spec
        action = str(change.action)
        if change.differences:
            action += " (" + ", ".join(d.split(":", 1)[0] for d in change.differences) + ")"
        if spec is None:
            rows.append((action, change.name, "-", change.note, "-"))
        else:
            rows.append((action, change.name, spec.metric_label, spec.condition, ", ".join(spec.actions) or "none"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows
    ]
    counts = {a: sum(1 for c in changes if c.action is a) for a in AlarmAction}
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    head = "dry run: nothing changed (run with --apply to make these changes)" if dry_run else "applied"
    return "\n".join([*lines, f"{head}; {summary or 'no alarms'}"])


_ACCESS_DENIED: Final = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
_BAD_CREDENTIALS: Final = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
    }
)


def aws_error_message(exc: BaseException) -> str:
    """Return a one-line reason for an AWS failure (no traceback, at most 300 characters)."""
    from botocore import exceptions as aws  # noqa: PLC0415

    if isinstance(exc, aws.NoCredentialsError | aws.PartialCredentialsError):
        text = "no AWS credentials"
    elif isinstance(exc, aws.NoRegionError):
        text = NO_REGION
    elif isinstance(exc, aws.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "ClientError")
        message = str(error.get("Message") or "")
        if code in _ACCESS_DENIED:
            text = f"access denied: {message or code}"
        elif code in _BAD_CREDENTIALS:
            text = f"AWS rejected the credentials ({code}): {message}"
        else:
            text = f"{code}: {message}" if message else code
    elif isinstance(exc, aws.EndpointConnectionError | aws.ConnectTimeoutError | aws.ReadTimeoutError):
        text = f"cannot reach CloudWatch: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def run_alarms(settings: Settings, apply: bool, client: CloudWatchClient | None = None) -> int:
    """Print the alarm plan and apply it when `apply` (else a dry run); 0 when done, 1 on an AWS error."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    specs = alarm_specs(settings.alarms, settings.metrics.namespace)
    try:
        if client is None:
            found = connect(settings.metrics.region, client_config(ALARMS_READ_TIMEOUT_SECONDS, ALARMS_MAX_ATTEMPTS))
            if isinstance(found, str):
                print(f"tradebot ops alarms: {found}", file=sys.stderr)
                return 1
            client = found[0]
        changes = apply_alarms(client, specs, dry_run=not apply)
    except (BotoCoreError, ClientError) as exc:
        print(f"tradebot ops alarms: {aws_error_message(exc)}", file=sys.stderr)
        return 1
    listed = {change.name for change in changes}
    changes += [
        AlarmChange(AlarmAction.SKIP, s.alarm.alarm_name, note=s.reason)
        for s in skipped_alarms(settings.alarms)
        if s.alarm.alarm_name not in listed  # an existing one is already reported as stale
    ]
    print(format_plan(changes, dry_run=not apply))
    return 0
