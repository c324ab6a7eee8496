"""CloudWatch alarms: their specifications from the settings, and applying them idempotently (create, update, leave)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from bot.config import AlarmSettings, Settings
from bot.ops.cloudwatch import (
    ALARMS_MAX_ATTEMPTS,
    ALARMS_READ_TIMEOUT_SECONDS,
    CloudWatchClient,
    connect,
)
from bot.ops.metrics import (
    Dimension,
    MetricName,
)
from data.aws import client_config, error_message

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
        print(f"tradebot ops alarms: {error_message(exc)}", file=sys.stderr)
        return 1
    listed = {change.name for change in changes}
    changes += [
        AlarmChange(AlarmAction.SKIP, s.alarm.alarm_name, note=s.reason)
        for s in skipped_alarms(settings.alarms)
        if s.alarm.alarm_name not in listed  # an existing one is already reported as stale
    ]
    print(format_plan(changes, dry_run=not apply))
    return 0
