"""Settings of drift, learning, metrics, alarms, backups, health, the summary and logging."""

from __future__ import annotations

from datetime import time
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from bot.config.base import _Frozen


class DriftSettings(_Frozen):
    """`[drift]`: comparing live results with the pre-deploy baselines, and what a verdict does."""

    enabled: bool = True
    check_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60  # bot minutes between checks
    degradation: Annotated[float, Field(gt=0, lt=1)] = 0.15  # relative drop of a metric that counts as degraded
    min_trades: Annotated[int, Field(ge=2, le=1000)] = 10  # fewer live trades: no verdict
    window: Annotated[int, Field(ge=10, le=10_000)] = 100  # the latest trades compared
    ks_alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    false_alarm: Annotated[float, Field(gt=0, lt=0.5)] = 0.04  # sequential detector, over `horizon` trades
    horizon: Annotated[int, Field(ge=10, le=10_000)] = 100
    win_rate_drop: Annotated[float, Field(gt=0, lt=1)] = 0.20  # the drop the detector is designed to catch
    cooldown_hours: Annotated[float, Field(ge=0, le=24 * 30)] = 24.0
    disable_on_critical: bool = True

    @model_validator(mode="after")
    def _window_within_horizon(self) -> DriftSettings:
        if not self.min_trades <= self.window <= self.horizon:
            raise ValueError(
                f"min_trades <= window <= horizon must hold, were {self.min_trades}, {self.window}, {self.horizon}"
            )
        return self


class DemoteAction(StrEnum):
    """What learning does with a pair whose posterior expectancy is below zero with high confidence."""

    ASK_ONLY = "ask_only"
    PAUSE = "pause"
    NONE = "none"  # report it only


class LearningSettings(_Frozen):
    """`[learning]`: posteriors, score calibration and strategy re-weighting from recorded outcomes."""

    frozen: bool = False  # true: the scheduled run and `tradebot learn` change nothing (rollback still works)
    hour_utc: Annotated[int, Field(ge=0, le=23)] = 22  # the daily run, on the bot clock
    prior_trades: Annotated[float, Field(gt=0, le=10_000)] = 20.0
    half_life_days: Annotated[float, Field(gt=0, le=3650)] = 90.0
    demote_confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.90
    min_live_for_demotion: Annotated[int, Field(ge=1, le=10_000)] = 10
    demote_action: DemoteAction = DemoteAction.ASK_ONLY
    method: Literal["isotonic", "logistic"] = "isotonic"
    holdout_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3
    min_calibration_trades: Annotated[int, Field(ge=20, le=1_000_000)] = 100
    backtest_bars: Annotated[int, Field(ge=500, le=5_000_000)] = 20_000  # history per pair for calibration


class MetricsSettings(_Frozen):
    """`[metrics]`: CloudWatch metrics, published from a background task that never delays trading."""

    enabled: bool = True  # without AWS credentials the bot logs one line and publishes nothing
    namespace: Annotated[str, Field(min_length=1, max_length=255)] = "TradingBot"
    region: str | None = None  # default: AWS_REGION, then the SDK's (AWS_DEFAULT_REGION), then the instance's
    queue_size: Annotated[int, Field(ge=10, le=1_000_000)] = 10_000  # points waiting; beyond it, drops are counted
    flush_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    heartbeat_seconds: Annotated[float, Field(gt=0, le=300)] = 60.0
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0  # per PutMetricData call


class AlarmSettings(_Frozen):
    """`[alarms]`: the CloudWatch alarms `tradebot ops alarms --apply` creates."""

    sns_topic_arn: str | None = None  # where alarms notify (none: alarms only change state)
    instance_id: str | None = None  # the EC2 instance the CloudWatch agent reports memory and disk for
    failed_orders: Annotated[int, Field(ge=1, le=1000)] = 3  # in 15 minutes
    memory_percent: Annotated[float, Field(gt=0, le=100)] = 90.0
    disk_percent: Annotated[float, Field(gt=0, le=100)] = 85.0
    disk_path: str = "/"


class BackupSettings(_Frozen):
    """`[backup]`: the daily database snapshot (SQLite online backup, gzip) and how many are kept."""

    enabled: bool = True
    to: str = ""  # a directory or s3://bucket/prefix; empty: `backups/` beside the database
    keep: Annotated[int, Field(ge=1, le=10_000)] = 14
    hour_utc: Annotated[int, Field(ge=0, le=23)] = 3  # on the bot clock

    @field_validator("to")
    @classmethod
    def _s3_has_bucket(cls, value: str) -> str:
        if value.startswith("s3://") and not value.removeprefix("s3://").split("/")[0]:
            raise ValueError(f"an S3 destination needs a bucket, e.g. s3://my-bucket/tradebot, was {value!r}")
        return value


class HealthSettings(_Frozen):
    """`[health]`: what `tradebot health` and `/health` call healthy."""

    run_grace_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15  # after a scheduled run was due
    heartbeat_max_age_seconds: Annotated[int, Field(ge=10, le=3600)] = 180  # the running bot's last heartbeat
    telegram_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0


class SummarySettings(_Frozen):
    """`[summary]`: the daily summary message, at a local time."""

    enabled: bool = True
    at: time = time(18, 0)  # local time in `timezone`, on the bot clock
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (an IANA name such as Europe/London)") from None
        return value


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"  # one JSON object per line, for journald and CloudWatch Logs


class LoggingSettings(_Frozen):
    """`[logging]`: the service's log lines."""

    format: LogFormat = LogFormat.TEXT


class WebSettings(_Frozen):
    """`[web]`: the dashboard, served by `tradebot run` at /dashboard (always on in the sandbox)."""

    enabled: bool = False
    host: str = "127.0.0.1"  # any other address needs a token from `tradebot web token` on every request
    port: Annotated[int, Field(ge=1, le=65535)] = 8766
