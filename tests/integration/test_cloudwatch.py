"""CloudWatch metrics and alarms: real boto3 clients against moto, offline, never the EC2 metadata service."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from bot.config import AlarmSettings, MetricsSettings, Settings
from bot.ops.alarms import (
    AGENT_DISK_METRIC,
    AGENT_MEMORY_METRIC,
    AGENT_NAMESPACE,
    ALARM_PREFIX,
    Alarm,
    AlarmAction,
    AlarmSpec,
    alarm_specs,
    apply_alarms,
    run_alarms,
    skipped_alarms,
)
from bot.ops.cloudwatch import (
    MAX_REQUEST_BYTES,
    NO_CREDENTIALS,
    CloudWatchSink,
    build_metrics,
    close_metrics,
)
from bot.ops.metrics import (
    PUT_METRIC_DATA_MAX_DATUMS,
    Dimension,
    MetricName,
    MetricPoint,
    MetricsPublisher,
    NullMetrics,
    Unit,
)
from data.aws import error_message
from tests.fakes.aws import isolate_aws

REGION = "eu-west-1"
NAMESPACE = "TradingBot"
TOPIC = f"arn:aws:sns:{REGION}:123456789012:tradebot-alarms"
INSTANCE = "i-0123456789abcdef0"
AGENT_CONFIG = Path(__file__).resolve().parents[2] / "ops" / "cloudwatch-agent.json"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Fake credentials and region, no AWS files, and never the EC2 metadata service."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("TRADEBOT_"):
            monkeypatch.delenv(name)
    isolate_aws(monkeypatch, tmp_path, fake_keys=True)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    caplog.set_level(logging.INFO, logger="tradebot")


def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")


@pytest.fixture
def client() -> Iterator[Any]:
    """A moto-backed CloudWatch, as a real boto3 client."""
    with mock_aws():
        yield boto3.client("cloudwatch", region_name=REGION)


class Calls:
    """Count the client's real API calls by operation, with the MetricData sizes of PutMetricData."""

    def __init__(self, client: Any) -> None:
        self.operations: list[str] = []
        self.datums: list[int] = []
        self.bodies: list[int] = []
        client.meta.events.register("provide-client-params.cloudwatch.*", self._params)
        client.meta.events.register("before-send.cloudwatch.PutMetricData", self._send)

    def _params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.operations.append(model.name)
        if model.name == "PutMetricData":
            self.datums.append(len(params["MetricData"]))

    def _send(self, request: Any, **_: Any) -> None:
        self.bodies.append(len(request.body or b""))

    def count(self, operation: str) -> int:
        return self.operations.count(operation)


def recent() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=1)


def statistics(client: Any, metric: str, dimensions: dict[str, str] | None = None) -> tuple[float, float]:
    """Return (Sum, SampleCount) of `metric` with these dimensions over the last hour."""
    now = datetime.now(UTC)
    response = client.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=metric,
        Dimensions=[{"Name": k, "Value": v} for k, v in (dimensions or {}).items()],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(minutes=5),
        Period=3600,
        Statistics=["Sum", "SampleCount"],
    )
    points = response["Datapoints"]
    return sum(p["Sum"] for p in points), sum(p["SampleCount"] for p in points)


# ------------------------------------------------------------------------------------------------ metrics


async def test_points_recorded_come_back_as_statistics_per_metric_and_dimension(client: Any) -> None:
    publisher = MetricsPublisher(CloudWatchSink(client, NAMESPACE), recent, flush_seconds=0.05, timeout_seconds=5)
    publisher.start()
    for _ in range(3):
        publisher.record(MetricName.HEARTBEAT, 1)
    publisher.record(MetricName.SIGNALS_GENERATED, 3, dimensions={Dimension.STRATEGY: "trend_pullback"})
    publisher.record(MetricName.SIGNALS_GENERATED, 1, dimensions={Dimension.STRATEGY: "trend_pullback"})
    publisher.record(MetricName.SIGNALS_GENERATED, 2, dimensions={Dimension.STRATEGY: "defining_order"})
    publisher.record(MetricName.DRIFT_ALERTS, 1, dimensions={Dimension.SEVERITY: "CRITICAL"})
    publisher.record(MetricName.DRIFT_ALERTS, 1, dimensions={Dimension.SEVERITY: "LOW"})
    publisher.record(MetricName.SCAN_DURATION, 2.5, Unit.SECONDS)
    publisher.record(MetricName.SCAN_DURATION, 1.5, Unit.SECONDS)
    # Two dimensions given in reverse order are sent sorted by name.
    publisher.record(MetricName.DRIFT_ALERTS, 1, dimensions={Dimension.STRATEGY: "s", Dimension.SEVERITY: "HIGH"})
    await publisher.stop(timeout=5)
    assert (publisher.sent, publisher.dropped) == (11, 0)

    assert statistics(client, "Heartbeat") == (3.0, 3.0)
    assert statistics(client, "SignalsGenerated", {"Strategy": "trend_pullback"}) == (4.0, 2.0)
    assert statistics(client, "SignalsGenerated", {"Strategy": "defining_order"}) == (2.0, 1.0)
    assert statistics(client, "DriftAlerts", {"Severity": "CRITICAL"}) == (1.0, 1.0)
    assert statistics(client, "ScanDuration") == (4.0, 2.0)
    now = datetime.now(UTC)
    data = client.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "low",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": "DriftAlerts",
                        "Dimensions": [{"Name": "Severity", "Value": "LOW"}],
                    },
                    "Period": 3600,
                    "Stat": "SampleCount",
                },
            }
        ],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(minutes=5),
    )
    assert sum(data["MetricDataResults"][0]["Values"]) == 1.0
    listed = client.list_metrics(Namespace=NAMESPACE, MetricName="DriftAlerts")["Metrics"]
    assert [[d["Name"] for d in m["Dimensions"]] for m in listed if len(m["Dimensions"]) == 2] == [
        ["Severity", "Strategy"]
    ]


async def test_2500_points_take_three_requests_of_at_most_1000(client: Any) -> None:
    calls = Calls(client)
    sink = CloudWatchSink(client, NAMESPACE)
    points = [MetricPoint(MetricName.SIGNAL_QUALITY, float(k % 100), Unit.NONE, recent()) for k in range(2_500)]
    await sink.put(points)
    assert calls.datums == [1_000, 1_000, 500] and sink.requests == 3

    publisher = MetricsPublisher(sink, recent, flush_seconds=0.05, timeout_seconds=5)
    for k in range(2_500):
        publisher.record(MetricName.SIGNAL_QUALITY, float(k % 100), Unit.NONE)
    publisher.start()
    await publisher.stop(timeout=5)
    assert calls.datums[3:] == [1_000, 1_000, 500] and publisher.sent == 2_500
    assert max(calls.datums) <= PUT_METRIC_DATA_MAX_DATUMS
    assert statistics(client, "SignalQuality")[1] == 5_000.0
    sink.close()


async def test_requests_are_split_by_size_below_one_megabyte() -> None:
    with mock_aws():
        client = boto3.client("cloudwatch", region_name=REGION, config=Config(disable_request_compression=True))
        calls = Calls(client)
        sink = CloudWatchSink(client, NAMESPACE)
        long_names = [f"{k:04d}-" + "x" * 1_000 for k in range(1_000)]  # dimension values near their 1,024 limit
        points = [
            MetricPoint(MetricName.SIGNALS_GENERATED, 1.0, Unit.COUNT, recent(), {Dimension.STRATEGY: name})
            for name in long_names
        ]
        await sink.put(points)
        assert len(calls.datums) > 1 and sum(calls.datums) == 1_000
        assert max(calls.bodies) <= MAX_REQUEST_BYTES  # the real (uncompressed) request bodies
        assert statistics(client, "SignalsGenerated", {"Strategy": long_names[-1]}) == (1.0, 1.0)


async def test_points_cloudwatch_would_reject_are_left_out_not_failing_the_request(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls(client)
    sink = CloudWatchSink(client, NAMESPACE)
    now = datetime.now(UTC)
    points = [
        MetricPoint(MetricName.HEARTBEAT, 1.0, Unit.COUNT, now - timedelta(days=15)),  # a replayed bot clock
        MetricPoint(MetricName.HEARTBEAT, 1.0, Unit.COUNT, now + timedelta(hours=3)),
        MetricPoint(MetricName.HEARTBEAT, float("nan"), Unit.COUNT, now),
        MetricPoint(MetricName.HEARTBEAT, 1.0, Unit.COUNT, now, {Dimension.STRATEGY: ""}),
        MetricPoint(MetricName.HEARTBEAT, 1.0, Unit.COUNT, now.replace(tzinfo=None)),  # naive: taken as UTC
    ]
    await sink.put(points)
    await sink.put(points[:2])  # nothing left to send: no request
    assert (sink.rejected, calls.datums) == (6, [1])
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "4 points left out" in warnings[0].getMessage()
    sink.close()


async def test_metrics_disabled_in_the_config_are_off_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    metrics = await build_metrics(MetricsSettings(enabled=False), recent)
    assert isinstance(metrics, NullMetrics)
    assert [r.getMessage() for r in caplog.records] == [
        "CloudWatch metrics off: disabled in the config ([metrics] enabled = false)"
    ]
    await close_metrics(metrics)


async def test_no_credentials_means_no_metrics_and_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    no_credentials(monkeypatch)
    metrics = await build_metrics(MetricsSettings(), recent)
    assert isinstance(metrics, NullMetrics)
    assert [r.getMessage() for r in caplog.records] == [f"CloudWatch metrics off: {NO_CREDENTIALS}"]
    assert NO_CREDENTIALS == "no AWS credentials found"


async def test_no_region_means_no_metrics_and_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    metrics = await build_metrics(MetricsSettings(), recent)
    assert isinstance(metrics, NullMetrics)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("CloudWatch metrics off: no AWS region") and "Traceback" not in caplog.text


async def test_a_broken_aws_profile_means_no_metrics_and_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nonexistent")
    metrics = await build_metrics(MetricsSettings(), recent)
    assert isinstance(metrics, NullMetrics)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("CloudWatch metrics off: ProfileNotFound") and "Traceback" not in caplog.text


async def test_built_metrics_publish_to_the_configured_namespace_and_region(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-south-1")  # the bot's AWS_REGION wins over the SDK's default region
    with mock_aws():
        metrics = await build_metrics(MetricsSettings(namespace="TradingBotTest", flush_seconds=0.05), recent)
        assert isinstance(metrics, MetricsPublisher) and metrics.running
        metrics.record(MetricName.HEARTBEAT, 1)
        await close_metrics(metrics, timeout=5)
        assert (metrics.sent, metrics.running) == (1, False)
        listed = boto3.client("cloudwatch", region_name="ap-south-1").list_metrics(Namespace="TradingBotTest")
        assert [m["MetricName"] for m in listed["Metrics"]] == ["Heartbeat"]
    assert "CloudWatch metrics on: namespace TradingBotTest in ap-south-1" in caplog.records[0].getMessage()


# ------------------------------------------------------------------------------------------------ alarms


def full() -> AlarmSettings:
    return AlarmSettings(sns_topic_arn=TOPIC, instance_id=INSTANCE)


def described(client: Any) -> dict[str, dict[str, Any]]:
    alarms = client.describe_alarms(AlarmNamePrefix=ALARM_PREFIX)["MetricAlarms"]
    return {a["AlarmName"]: a for a in alarms}


def test_apply_creates_every_alarm_as_specified(client: Any) -> None:
    calls = Calls(client)
    changes = apply_alarms(client, alarm_specs(full(), NAMESPACE), dry_run=False)
    assert [c.action for c in changes] == [AlarmAction.CREATE] * 9
    assert calls.count("PutMetricAlarm") == 9
    alarms = described(client)
    assert set(alarms) == {a.alarm_name for a in Alarm}

    def shape(name: str) -> tuple[Any, ...]:
        a = alarms[ALARM_PREFIX + name]
        dims = sorted((d["Name"], d["Value"]) for d in a["Dimensions"])
        return (
            a["Namespace"], a["MetricName"], a["Statistic"], a["ComparisonOperator"], a["Threshold"], a["Period"],
            a["EvaluationPeriods"], a["DatapointsToAlarm"], a["TreatMissingData"], dims,
        )  # fmt: skip

    ge, lt = "GreaterThanOrEqualToThreshold", "LessThanThreshold"
    assert shape("heartbeat-missing") == (NAMESPACE, "Heartbeat", "Sum", lt, 1.0, 60, 5, 5, "breaching", [])
    assert shape("drift-critical") == (
        NAMESPACE, "DriftAlerts", "Sum", ge, 1.0, 300, 1, 1, "notBreaching", [("Severity", "CRITICAL")],
    )  # fmt: skip
    assert shape("orders-failed") == (NAMESPACE, "OrdersFailed", "Sum", ge, 3.0, 900, 1, 1, "notBreaching", [])
    assert shape("circuit-open") == (NAMESPACE, "CircuitOpen", "Maximum", ge, 1.0, 60, 2, 2, "notBreaching", [])
    assert shape("no-signals") == (
        NAMESPACE,
        "HoursWithoutSignals",
        "Maximum",
        "GreaterThanOrEqualToThreshold",
        24.0,
        3600,
        1,
        1,
        "notBreaching",
        [],
    )
    assert shape("scan-errors") == (NAMESPACE, "ScanErrors", "Sum", ge, 1.0, 900, 1, 1, "notBreaching", [])
    assert shape("data-errors") == (NAMESPACE, "DataErrors", "Sum", ge, 12.0, 3600, 1, 1, "notBreaching", [])
    assert shape("memory-high") == (
        "CWAgent", "mem_used_percent", "Average", ge, 90.0, 300, 3, 3, "missing", [("InstanceId", INSTANCE)],
    )  # fmt: skip
    assert shape("disk-high") == (
        "CWAgent", "disk_used_percent", "Average", ge, 85.0, 300, 3, 3, "missing",
        [("InstanceId", INSTANCE), ("path", "/")],
    )  # fmt: skip
    for alarm in Alarm:
        a = alarms[alarm.alarm_name]
        assert (a["AlarmActions"], a["OKActions"], a["ActionsEnabled"]) == ([TOPIC], [TOPIC], True)
        assert a["AlarmDescription"].endswith(f"See ops/runbook.md#{alarm.value}")


def test_reapplying_changes_nothing_and_calls_put_metric_alarm_zero_times(client: Any) -> None:
    apply_alarms(client, alarm_specs(full(), NAMESPACE), dry_run=False)
    calls = Calls(client)
    changes = apply_alarms(client, alarm_specs(full(), NAMESPACE), dry_run=False)
    assert {c.action for c in changes} == {AlarmAction.UNCHANGED} and len(changes) == 9
    assert calls.count("PutMetricAlarm") == 0 and calls.count("DescribeAlarms") == 1


def test_a_changed_setting_updates_exactly_that_alarm(client: Any) -> None:
    apply_alarms(client, alarm_specs(full(), NAMESPACE), dry_run=False)
    calls = Calls(client)
    changed = AlarmSettings(sns_topic_arn=TOPIC, instance_id=INSTANCE, failed_orders=5)
    changes = apply_alarms(client, alarm_specs(changed, NAMESPACE), dry_run=False)
    [update] = [c for c in changes if c.action is AlarmAction.UPDATE]
    assert update.name == "tradebot-orders-failed"
    assert update.differences == (
        "AlarmDescription: '3 or more orders failed at the broker within 15 minutes. See ops/runbook.md#orders-failed'"
        " -> '5 or more orders failed at the broker within 15 minutes. See ops/runbook.md#orders-failed'",
        "Threshold: 3.0 -> 5.0",
    )
    assert sum(c.action is AlarmAction.UNCHANGED for c in changes) == 8
    assert calls.count("PutMetricAlarm") == 1
    assert described(client)["tradebot-orders-failed"]["Threshold"] == 5.0


def test_dry_run_reports_but_changes_nothing(client: Any) -> None:
    calls = Calls(client)
    changes = apply_alarms(client, alarm_specs(full(), NAMESPACE), dry_run=True)
    assert {c.action for c in changes} == {AlarmAction.CREATE}
    assert calls.count("PutMetricAlarm") == 0 and described(client) == {}
    apply_alarms(client, alarm_specs(full(), NAMESPACE), dry_run=False)
    quieter = AlarmSettings(sns_topic_arn=None, instance_id=INSTANCE)
    changes = apply_alarms(client, alarm_specs(quieter, NAMESPACE), dry_run=True)
    assert {c.action for c in changes} == {AlarmAction.UPDATE}  # the SNS actions differ everywhere
    assert described(client)["tradebot-heartbeat-missing"]["AlarmActions"] == [TOPIC]


def test_other_alarms_are_stale_or_ignored_never_deleted(client: Any) -> None:
    for name in ("tradebot-retired", "someone-elses-alarm"):
        client.put_metric_alarm(
            AlarmName=name, Namespace=NAMESPACE, MetricName="Old", Statistic="Sum", Period=60, EvaluationPeriods=1,
            Threshold=1, ComparisonOperator="GreaterThanThreshold",
        )  # fmt: skip
    changes = apply_alarms(client, alarm_specs(full(), NAMESPACE), dry_run=False)
    assert [(c.action, c.name) for c in changes if c.action is not AlarmAction.CREATE] == [
        (AlarmAction.STALE, "tradebot-retired")
    ]
    assert "tradebot-retired" in described(client)
    # A console edit outside our fields (a unit) is also put right.
    client.put_metric_alarm(**{**alarm_specs(full(), NAMESPACE)[0].request(), "Unit": "Seconds"})
    [update] = [c for c in apply_alarms(client, alarm_specs(full(), NAMESPACE), True) if c.differences]
    assert update.differences == ("Unit: 'Seconds' -> None",)


def test_memory_and_disk_are_skipped_without_an_instance_id_and_the_plan_says_why(
    client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = AlarmSettings(sns_topic_arn=TOPIC)
    names = {s.name for s in alarm_specs(settings, NAMESPACE)}
    assert names == {a.alarm_name for a in Alarm} - {"tradebot-memory-high", "tradebot-disk-high"}
    assert [s.alarm for s in skipped_alarms(settings)] == [Alarm.MEMORY_HIGH, Alarm.DISK_HIGH]
    assert skipped_alarms(full()) == []
    assert run_alarms(Settings(alarms=settings), apply=False, client=client) == 0
    out = capsys.readouterr().out
    skip_lines = [line for line in out.splitlines() if line.startswith("skip")]
    assert len(skip_lines) == 2 and all("instance_id is not set" in line for line in skip_lines)


def test_run_alarms_prints_one_line_per_alarm_and_applies(client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(alarms=full())
    assert run_alarms(settings, apply=False, client=client) == 0
    dry = capsys.readouterr().out.splitlines()
    assert dry[0].split() == ["ACTION", "ALARM", "METRIC", "CONDITION", "SNS"]
    assert len(dry) == 1 + 9 + 1 and dry[-1].startswith("dry run: nothing changed") and described(client) == {}
    heartbeat = next(line for line in dry if "tradebot-heartbeat-missing" in line)
    assert heartbeat.split()[0] == "create" and "TradingBot/Heartbeat" in heartbeat
    assert "Sum < 1 in 5 of 5 x 60 s; missing data breaching" in heartbeat and heartbeat.endswith(TOPIC)
    disk = next(line for line in dry if "tradebot-disk-high" in line)
    assert f"CWAgent/disk_used_percent{{InstanceId={INSTANCE},path=/}}" in disk

    assert run_alarms(settings, apply=True, client=client) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "applied; 9 create"
    assert len(described(client)) == 9
    assert run_alarms(settings, apply=True, client=client) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "applied; 9 unchanged"


def test_run_alarms_without_credentials_exits_1_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_credentials(monkeypatch)
    assert run_alarms(Settings(), apply=True) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"tradebot ops alarms: {NO_CREDENTIALS}\n"


class DeniedClient:
    """A client whose account lacks cloudwatch:DescribeAlarms (the ClientError botocore raises for a 403)."""

    def describe_alarms(self, **_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "User: arn:aws:iam::123456789012:user/x is not authorized"}},
            "DescribeAlarms",
        )

    def put_metric_alarm(self, **_: Any) -> Any:
        raise AssertionError("not reached")

    def put_metric_data(self, **_: Any) -> Any:
        raise AssertionError("not reached")


def test_run_alarms_reports_access_denied_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_alarms(Settings(), apply=True, client=DeniedClient()) == 1
    err = capsys.readouterr().err
    assert err == "tradebot ops alarms: access denied: User: arn:aws:iam::123456789012:user/x is not authorized\n"
    expired = ClientError({"Error": {"Code": "ExpiredToken", "Message": "expired"}}, "PutMetricData")
    assert error_message(expired) == "AWS rejected the credentials (ExpiredToken): expired"


def test_the_agent_config_publishes_exactly_the_dimensions_the_alarms_use() -> None:
    config = json.loads(AGENT_CONFIG.read_text())
    metrics = config["metrics"]
    assert metrics["namespace"] == AGENT_NAMESPACE
    assert metrics["append_dimensions"] == {"InstanceId": "${aws:InstanceId}"}
    assert config["agent"]["omit_hostname"] is True  # no `host` dimension on the raw series either
    aggregations = {tuple(sorted(d)) for d in metrics["aggregation_dimensions"]}
    specs: dict[str, AlarmSpec] = {s.metric: s for s in alarm_specs(full(), NAMESPACE) if s.namespace == "CWAgent"}
    assert set(specs) == {AGENT_MEMORY_METRIC, AGENT_DISK_METRIC}
    for spec in specs.values():
        assert tuple(sorted(k for k, _ in spec.dimensions)) in aggregations

    collected = metrics["metrics_collected"]
    names = {m if m.startswith(f"{section}_") else f"{section}_{m}" for section in ("mem", "disk") for m in
             collected[section]["measurement"]}  # fmt: skip
    assert names == {AGENT_MEMORY_METRIC, AGENT_DISK_METRIC}
    disk = collected["disk"]
    assert disk["resources"] == [AlarmSettings().disk_path] and disk["drop_device"] is True
    assert {"tmpfs", "overlay", "devtmpfs"} <= set(disk["ignore_file_system_types"])
    assert {s["metrics_collection_interval"] for s in collected.values()} == {60}

    [logs] = config["logs"]["logs_collected"]["files"]["collect_list"]
    assert (logs["file_path"], logs["log_group_name"], logs["retention_in_days"]) == (
        "/var/log/syslog",
        "/tradebot/service",
        30,
    )
    [only] = logs["filters"]
    assert only["type"] == "include"
    pattern = re.compile(only["expression"])  # RE2 and Python agree on this syntax
    assert pattern.search("Jun  9 03:45:00 ip-10-0-0-5 tradebot[4242]: scan finished: 3 setups")
    assert pattern.search("2025-06-09T03:45:00.123456+00:00 ip-10-0-0-5 tradebot[17]: Traceback (most recent call)")
    assert not pattern.search("2025-06-09T03:45:00+00:00 ip-10-0-0-5 systemd[1]: Started trading-bot.service")
    assert not pattern.search("Jun  9 03:45:00 ip-10-0-0-5 mytradebot[1]: unrelated")
