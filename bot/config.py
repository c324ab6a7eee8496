"""Typed, frozen settings loaded once: environment, then `.env`, then the TOML config file, then defaults.

The config file is `TRADEBOT_CONFIG` (default `tradebot.toml` in the working directory; when that default
file is absent the built-in defaults apply). Any unknown key, wrong type or impossible value raises
`ConfigError` whose message names the key and the rule; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.ops.secrets import SecretsError, secret_overrides
from data.market.calendars import market_calendar
from data.market.news_feed import NewsSource
from data.market.sources import parse_source
from engine.calendars import BUILTIN_CALENDARS, SessionCalendar, clock_text, get_calendar
from engine.catalog import DEFAULT_WATCHLIST
from engine.domain import AssetClass, Instrument, Interval
from engine.news import EmbargoConfig, FeedFallback, Impact
from engine.pipeline import EngineConfig, ValidationRules
from engine.protections import ProtectionConfig
from engine.quality import DEFAULT_WEIGHTS, Component, QualityScorer, QualityWeights
from engine.sizing import (
    DEFAULT_MAX_LEVERAGE,
    DEFAULT_MAX_TOTAL_LEVERAGE,
    ExposureClass,
    ExposureLimits,
    SizeLimits,
)
from engine.strategy import REGISTRY, Strategy, StrategyParams, strategy_names
from engine.trading import ExecutionMode

CONFIG_ENV = "TRADEBOT_CONFIG"
DEFAULT_CONFIG_FILE = "tradebot.toml"
ENV_PREFIX = "TRADEBOT_"
DB_FILE_NAME = "tradebot.db"

PositiveDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
CURRENCY_PATTERN: Final = r"^[A-Z]{3}$"  # ISO 4217 code, e.g. USD
PAIR_PATTERN: Final = r"^[A-Z]{6}$"  # base then quote currency, e.g. USDINR
Weight = Annotated[float, Field(ge=0.0, le=1.0)]


class SecretsUnavailable(Exception):
    """AWS Secrets Manager could not be reached now; trying again later may work."""


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and the rule."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InstrumentConfig(_Frozen):
    """One watchlist entry."""

    symbol: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._\-^=]+$")]
    ticker: str | None = None
    asset_class: AssetClass
    interval: Interval
    tick_size: PositiveDecimal
    pip_size: PositiveDecimal
    lot_size: PositiveDecimal
    contract_size: PositiveDecimal
    calendar: str
    timezone: str | None = None
    spread: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] = Decimal(0)
    has_volume: bool = True
    quote_currency: Annotated[str | None, Field(pattern=CURRENCY_PATTERN)] = None  # default: told from the symbol
    min_quantity: PositiveDecimal | None = None  # lots; a smaller risk-based size is not traded
    max_quantity: PositiveDecimal | None = None  # lots per signal
    max_notional: PositiveDecimal | None = None  # account money per signal
    max_leverage: PositiveDecimal | None = None  # notional / equity per position; default: its class's [bot.exposure]
    freeze_quantity: PositiveDecimal | None = None  # lots per order: larger signals go out as child orders

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, value: str) -> str:
        get_calendar(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown timezone {value!r} (use an IANA name like 'Asia/Kolkata')") from None
        return value

    @model_validator(mode="after")
    def _limits(self) -> InstrumentConfig:
        self.size_limits()  # min above max, a freeze under one lot: said here, at load time
        if self.freeze_quantity is not None and self.freeze_quantity < self.lot_size:
            raise ValueError(f"freeze_quantity {self.freeze_quantity} is below one lot step {self.lot_size}")
        return self

    def size_limits(self) -> SizeLimits:
        """The order limits of this instrument (lots, and account money for the notional)."""
        return SizeLimits(self.min_quantity, self.max_quantity, self.max_notional, self.freeze_quantity)

    def to_instrument(self) -> Instrument:
        return Instrument(
            symbol=self.symbol,
            ticker=self.ticker or self.symbol,
            asset_class=self.asset_class,
            interval=self.interval,
            tick_size=self.tick_size,
            pip_size=self.pip_size,
            lot_size=self.lot_size,
            contract_size=self.contract_size,
            calendar=self.calendar,
            timezone=self.timezone or BUILTIN_CALENDARS[self.calendar].timezone,
            spread=self.spread,
            has_volume=self.has_volume,
        )

    @classmethod
    def from_instrument(cls, instrument: Instrument) -> InstrumentConfig:
        return cls(
            symbol=instrument.symbol,
            ticker=instrument.ticker,
            asset_class=instrument.asset_class,
            interval=instrument.interval,
            tick_size=instrument.tick_size,
            pip_size=instrument.pip_size,
            lot_size=instrument.lot_size,
            contract_size=instrument.contract_size,
            calendar=instrument.calendar,
            timezone=instrument.timezone,
            spread=instrument.spread,
            has_volume=instrument.has_volume,
        )


def _utc_instant(value: datetime | None) -> datetime | None:
    """An instant that names its timezone, in UTC."""
    if value is not None and value.tzinfo is None:
        raise ValueError("must name its timezone, e.g. 2025-09-01T00:00:00Z")
    return None if value is None else value.astimezone(UTC)


class PairConfig(_Frozen):
    """Parameters of one strategy on one symbol, over the strategy's own (`tradebot optimise --adopt` writes these).

    `tuned_until`: the parameters were chosen on data up to this instant, so the gate counts only later trades as
    out of sample. Parameters tuned by hand on history should say so too.
    """

    params: dict[str, Any] = Field(default_factory=dict)
    tuned_until: datetime | None = None

    @field_validator("tuned_until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return _utc_instant(value)


class StrategyConfig(_Frozen):
    """Whether a strategy runs, on which symbols (default: every one it applies to) and its parameters.

    `params` apply to every symbol; `pairs.SYMBOL.params` override them for one symbol. `tuned_until` says the
    parameters were chosen on data up to then (see `PairConfig`).
    """

    enabled: bool = True
    symbols: tuple[str, ...] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    tuned_until: datetime | None = None
    pairs: dict[str, PairConfig] = Field(default_factory=dict)

    @field_validator("tuned_until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return _utc_instant(value)

    def params_for(self, symbol: str) -> dict[str, Any]:
        """The parameters given for `symbol`: the strategy's, with the pair's over them."""
        pair = self.pairs.get(symbol)
        return {**self.params, **(pair.params if pair is not None else {})}

    def tuned_until_for(self, symbol: str) -> datetime | None:
        """Until when the parameters of `symbol` were tuned: the later of the strategy's and the pair's."""
        pair = self.pairs.get(symbol)
        ends = [t for t in (self.tuned_until, pair.tuned_until if pair is not None else None) if t is not None]
        return max(ends, default=None)


class QualityConfig(_Frozen):
    weights: dict[Component, Weight] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    min_score: Annotated[float, Field(ge=0.0, le=100.0)] = 50.0

    @field_validator("weights", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        """Weights given in config override the defaults one by one; the others keep their default."""
        return {**{k.value: w for k, w in DEFAULT_WEIGHTS.items()}, **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _some_weight(self) -> QualityConfig:
        if not any(w > 0 for w in self.weights.values()):
            raise ValueError("at least one quality weight must be above 0")
        return self


class ValidationConfig(_Frozen):
    min_stop_ticks: Annotated[int, Field(ge=1)] = 3
    min_stop_spreads: Annotated[float, Field(ge=0.0)] = 2.0
    max_setup_age_bars: Annotated[int, Field(ge=1)] = 2
    stale_bars: Annotated[int, Field(ge=1)] = 3
    max_bad_fraction: Annotated[float, Field(ge=0.0, le=0.5)] = 0.01
    min_bars: Annotated[int, Field(ge=20)] = 100


class GateConfig(_Frozen):
    """Acceptance criteria of the pre-deploy gate, on out-of-sample results."""

    min_oos_trades: Annotated[int, Field(ge=1)] = 30
    min_profit_factor: Annotated[float, Field(ge=0)] = 1.2
    min_expectancy_r: float = 0.0
    min_sharpe: float = 0.5
    max_drawdown: Annotated[float, Field(gt=0, le=1)] = 0.25
    min_win_rate_ratio: Annotated[float, Field(ge=0, le=2)] = 0.85


class BacktestSettings(_Frozen):
    """Backtests, walk-forward validation and the executor they run on."""

    executor: str = "process"  # process, thread, serial, dask:local or dask://host:port
    workers: Annotated[int, Field(ge=1, le=512)] | None = None
    folds: Annotated[int, Field(ge=1, le=50)] = 6
    scheme: Literal["anchored", "rolling"] = "anchored"
    train_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.5
    search: Literal["grid", "random"] = "grid"
    candidates: Annotated[int, Field(ge=1, le=10_000)] = 20
    objective: Literal["expectancy_r", "profit_factor", "sharpe"] = "expectancy_r"
    min_train_trades: Annotated[int, Field(ge=0)] = 30
    seed: int = 0
    history_bars: Annotated[int, Field(ge=500, le=5_000_000)] = 20_000
    slippage_atr: Annotated[float, Field(ge=0, le=5)] = 0.0
    monte_carlo_runs: Annotated[int, Field(ge=100, le=100_000)] = 1000
    ruin_drawdown: Annotated[float, Field(gt=0, le=1)] = 0.3
    # A baseline whose data ends more than this many days before now is stale: the pair is validated again.
    baseline_max_age_days: Annotated[int, Field(ge=1, le=3650)] = 90
    # The running bot validates systems without a current baseline of their own in a worker process: at start
    # and once a day (bot clock). Off: only `tradebot validate` makes baselines.
    validate_in_background: bool = True
    gate: GateConfig = Field(default_factory=GateConfig)

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, value: str) -> str:
        from bot.ops.executors import parse_executor_spec  # noqa: PLC0415 - avoids importing dask at startup

        parse_executor_spec(value)
        return value


class CalendarConfig(_Frozen):
    """Extra knowledge about a market calendar: more holidays, and overrides of its entry rules."""

    holidays: tuple[date, ...] = ()
    holidays_known_until: date | None = None
    entry_cutoff_minutes: Annotated[int, Field(ge=0, le=720)] | None = None
    flat_at: time | None = None

    @field_validator("flat_at")
    @classmethod
    def _local_whole_minute(cls, value: time | None) -> time | None:
        if value is not None and (value.tzinfo is not None or value.second or value.microsecond):
            raise ValueError("must be a whole minute of the exchange's local time without a timezone, e.g. 15:15")
        return value

    def check(self, name: str) -> None:
        """Refuse overrides the calendar `name` cannot honour, naming the key."""
        base = get_calendar(name)
        where = f"calendars.{name}"
        if self.entry_cutoff_minutes is not None and self.entry_cutoff_minutes >= base.session_minutes:
            raise ValueError(
                f"{where}.entry_cutoff_minutes: must be shorter than the {name} session ({base.session_minutes} min), "
                f"was {self.entry_cutoff_minutes}"
            )
        if self.flat_at is not None and not base.open_offset < _offset(self.flat_at) <= base.close_offset:
            raise ValueError(
                f"{where}.flat_at: {self.flat_at:%H:%M} is outside the {name} session: it must be after the "
                f"{clock_text(base.open_offset)} open and at or before the {clock_text(base.close_offset)} close "
                f"({base.timezone})"
            )
        try:
            self.apply(base)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def apply(self, base: SessionCalendar) -> SessionCalendar:
        """`base` with these holidays added to its own and the configured entry rules."""
        changes: dict[str, Any] = {}
        if self.holidays:
            changes["holidays"] = base.holidays | frozenset(self.holidays)
        if self.holidays_known_until is not None and base.holidays_known_until is not None:
            changes["holidays_known_until"] = max(base.holidays_known_until, self.holidays_known_until)
        if self.entry_cutoff_minutes is not None:
            changes["entry_cutoff"] = timedelta(minutes=self.entry_cutoff_minutes)
        if self.flat_at is not None:
            changes["flat_at"] = _offset(self.flat_at)
        return base.replace(**changes) if changes else base


def _offset(clock: time) -> timedelta:
    return timedelta(hours=clock.hour, minutes=clock.minute)


class ScanConfig(_Frozen):
    """`[scan]`: the live scan loads at least `history_bars`, more when its indicators need more to converge."""

    history_bars: Annotated[int, Field(ge=300, le=50_000)] = 2000


class CostsConfig(_Frozen):
    """Paper fills: slippage and commission on top of the instrument's typical spread."""

    slippage_bps: Annotated[Decimal, Field(ge=0, le=1000, allow_inf_nan=False)] = Decimal("1")
    commission_bps: Annotated[Decimal, Field(ge=0, le=1000, allow_inf_nan=False)] = Decimal("1")
    commission_per_order: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] = Decimal("0")


class ScheduleConfig(_Frozen):
    """A cron-style analysis schedule for part of the watchlist, in the market's timezone."""

    name: Annotated[str, Field(min_length=1)]
    cron: str
    calendar: str | None = None
    symbols: tuple[str, ...] | None = None
    delay_seconds: Annotated[int, Field(ge=0, le=3600)] = 20

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415 - only needed to validate

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a 5-field cron expression ({exc})") from None
        return value

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, value: str | None) -> str | None:
        if value is not None:
            get_calendar(value)
        return value


class ProtectionsConfig(_Frozen):
    """Account protections: they block new entries (never exits); see `engine.protections`."""

    max_open_positions: Annotated[int, Field(ge=1, le=100)] = 5
    one_position_per_symbol: bool = True
    max_trades_per_day: Annotated[int, Field(ge=1, le=1000)] | None = 10
    daily_loss_money: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)] | None = None
    daily_loss_fraction: Annotated[Decimal, Field(gt=0, lt=1, allow_inf_nan=False)] | None = Decimal("0.03")
    max_consecutive_losses: Annotated[int, Field(ge=1, le=100)] | None = 3
    max_drawdown_fraction: Annotated[Decimal, Field(gt=0, lt=1, allow_inf_nan=False)] | None = Decimal("0.15")
    pause_on_drawdown: bool = False
    symbol_cooldown_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60)] = 120
    correlation_threshold: Annotated[float, Field(gt=0, le=1)] | None = 0.8
    correlation_lookback: Annotated[int, Field(ge=20, le=5000)] = 100
    blocked_hours: dict[str, tuple[Annotated[int, Field(ge=0, le=23)], ...]] = Field(default_factory=dict)
    day_timezone: str = "America/New_York"  # the trading day rolls over here (FX convention: 17:00 New York)
    day_rollover_hour: Annotated[int, Field(ge=0, le=23)] = 17

    @field_validator("day_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def engine_config(self) -> ProtectionConfig:
        """The engine's frozen protections config."""
        return ProtectionConfig(
            max_open_positions=self.max_open_positions,
            one_position_per_symbol=self.one_position_per_symbol,
            max_trades_per_day=self.max_trades_per_day,
            daily_loss_money=self.daily_loss_money,
            daily_loss_fraction=self.daily_loss_fraction,
            max_consecutive_losses=self.max_consecutive_losses,
            max_drawdown_fraction=self.max_drawdown_fraction,
            pause_on_drawdown=self.pause_on_drawdown,
            symbol_cooldown=timedelta(minutes=self.symbol_cooldown_minutes),
            correlation_threshold=self.correlation_threshold,
            correlation_lookback=self.correlation_lookback,
            blocked_hours=dict(self.blocked_hours),
        )


class NewsConfig(_Frozen):
    """The news embargo: no entries around high-impact events in the instrument's currencies."""

    source: str = "none"  # "forexfactory", "forexfactory:URL", "file:PATH.csv|json" or "none"
    before_minutes: Annotated[int, Field(ge=0, le=24 * 60)] = 30
    after_minutes: Annotated[int, Field(ge=0, le=24 * 60)] = 30
    impacts: tuple[Impact, ...] = (Impact.HIGH,)
    fallback: FeedFallback = FeedFallback.ALLOW  # when the calendar is unavailable: allow (and say so) or block

    @field_validator("source")
    @classmethod
    def _valid_source(cls, value: str) -> str:
        NewsSource(value)  # raises ValueError naming the accepted forms
        return value

    def embargo(self) -> EmbargoConfig:
        """The engine's embargo config."""
        return EmbargoConfig(
            before=timedelta(minutes=self.before_minutes),
            after=timedelta(minutes=self.after_minutes),
            impacts=frozenset(self.impacts),
            fallback=self.fallback,
        )


class ExposureConfig(_Frozen):
    """Notional caps as multiples of equity: per position by exposure class, and for all open positions."""

    max_leverage: dict[ExposureClass, PositiveDecimal] = Field(default_factory=lambda: dict(DEFAULT_MAX_LEVERAGE))
    max_total_leverage: PositiveDecimal = DEFAULT_MAX_TOTAL_LEVERAGE

    def limits(self, per_symbol: Mapping[str, Decimal]) -> ExposureLimits:
        """The engine's exposure limits, with the watchlist's per-symbol caps."""
        return ExposureLimits(dict(self.max_leverage), dict(per_symbol), self.max_total_leverage)


class BotConfig(_Frozen):
    """How the running bot offers, executes and tracks signals."""

    mode: ExecutionMode = ExecutionMode.MANUAL
    auto_threshold: Annotated[float, Field(ge=0, le=100)] = 80.0
    ask_threshold: Annotated[float, Field(ge=0, le=100)] = 60.0
    signal_ttl_bars: Annotated[int, Field(ge=1, le=100)] = 2
    max_price_drift_r: Annotated[float, Field(gt=0, le=5)] = 0.25
    symbol_cooldown_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60)] = 60
    digest_threshold: Annotated[int, Field(ge=1, le=50)] = 4
    max_signals_per_run: Annotated[int, Field(ge=1, le=50)] = 12
    account_equity: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)] = Decimal("10000")
    account_currency: Annotated[str, Field(pattern=CURRENCY_PATTERN)] = "USD"
    # Prices that convert other currencies into the account's when no watchlist pair or feed gives them,
    # e.g. USDINR = "84.10": used as configured, and said so in every signal sized with them.
    fx_rates: dict[Annotated[str, Field(pattern=PAIR_PATTERN)], PositiveDecimal] = Field(default_factory=dict)
    risk_per_trade: Annotated[Decimal, Field(gt=0, le=Decimal("0.1"), allow_inf_nan=False)] = Decimal("0.01")
    max_hold_bars: Annotated[int, Field(ge=1, le=10_000)] = 48
    send_interval_seconds: Annotated[float, Field(ge=0, le=60)] = 1.0
    trade_failed_strategies: bool = False  # override the pre-deploy gate (logged loudly on every signal)
    costs: CostsConfig = Field(default_factory=CostsConfig)
    exposure: ExposureConfig = Field(default_factory=ExposureConfig)
    protections: ProtectionsConfig = Field(default_factory=ProtectionsConfig)
    news: NewsConfig = Field(default_factory=NewsConfig)
    schedules: tuple[ScheduleConfig, ...] = ()

    @field_validator("fx_rates", mode="before")
    @classmethod
    def _pair_names_upper_case(cls, value: Any) -> Any:
        """Pair names as written in any case: environment variables reach here lower-cased (usdinr)."""
        return {str(k).upper(): v for k, v in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _thresholds(self) -> BotConfig:
        if self.ask_threshold > self.auto_threshold:
            raise ValueError(
                f"ask_threshold ({self.ask_threshold:g}) must not be above auto_threshold ({self.auto_threshold:g})"
            )
        return self


def _user_ids(value: Any) -> Any:
    """Parse TELEGRAM_ALLOWED_USERS: comma-separated numeric ids."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        bad = [p for p in parts if not p.lstrip("-").isdigit()]
        if bad:
            raise ValueError(f"must be comma-separated numeric Telegram user ids, got {', '.join(bad)}")
        return tuple(int(p) for p in parts)
    return value


def _default_db_path() -> Path:
    """Under systemd's StateDirectory when set, else `var/` in the working directory."""
    state = os.environ.get("STATE_DIRECTORY")
    base = Path(state.split(":")[0]) if state else Path("var")
    return base / DB_FILE_NAME


class _OwnDotEnv(DotEnvSettingsSource):
    """`.env` reader that leaves other programs' keys alone but still rejects unknown TRADEBOT_ keys."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        names = {n.lower() for n in self.settings_cls.model_fields}
        names |= {
            f.validation_alias.lower()
            for f in self.settings_cls.model_fields.values()
            if isinstance(f.validation_alias, str)
        }
        prefix = ENV_PREFIX.lower()
        return {k: v for k, v in data.items() if k.lower() in names or k.lower().startswith(prefix)}


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


class BrokerKind(StrEnum):
    PAPER = "paper"  # simulated fills against the bar provider (the default)
    OANDA = "oanda"  # OANDA v20 REST (practice by default)


LIVE_CONFIRMATION: Final = "I understand this trades real money"


class BrokerConfig(_Frozen):
    """Where approved orders go. Paper by default; real money needs two explicit settings.

    `shadow = true` (OANDA only) trades paper and records the exact OANDA order each fill would have sent,
    sending nothing; it needs the account and token to build that order, never the live switches.
    """

    kind: BrokerKind = BrokerKind.PAPER
    # Paper fills: "quote" at once at the last closed bar's price, or "next_open" at the open of the next bar as
    # the backtester enters (a replay on the bot clock then trades as the backtest does).
    paper_fill: Literal["quote", "next_open"] = "quote"
    shadow: bool = False  # with kind "oanda": record the OANDA orders, fill them on paper, send nothing
    oanda_account_id: str = ""
    oanda_environment: Literal["practice", "live"] = "practice"
    oanda_base_url: str | None = None  # overrides the environment's URL (a local test server)
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    live_trading: bool = False  # 1 of 2: allow the live environment at all
    live_confirmation: str = ""  # 2 of 2: must be exactly LIVE_CONFIRMATION
    retry_attempts: Annotated[int, Field(ge=1, le=10)] = 4
    breaker_failures: Annotated[int, Field(ge=1, le=100)] = 5
    breaker_cool_down_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0

    @model_validator(mode="after")
    def _live_needs_both_switches(self) -> BrokerConfig:
        if self.shadow and self.kind is not BrokerKind.OANDA:
            raise ValueError(
                "shadow = true needs kind = 'oanda' (shadow mode records the OANDA order it would send), "
                f"was {self.kind.value!r}"
            )
        if self.kind is BrokerKind.OANDA and not self.oanda_account_id:
            raise ValueError("broker kind 'oanda' needs oanda_account_id")
        if self.sends_orders and self.oanda_environment == "live":
            if not self.live_trading:
                raise ValueError("the OANDA live environment needs live_trading = true")
            if self.live_confirmation != LIVE_CONFIRMATION:
                raise ValueError(f"the OANDA live environment needs live_confirmation = {LIVE_CONFIRMATION!r}")
        return self

    @property
    def sends_orders(self) -> bool:
        """Whether orders really go to a broker (OANDA, not in shadow mode); otherwise they fill on paper."""
        return self.kind is BrokerKind.OANDA and not self.shadow


def _default_strategies() -> dict[str, StrategyConfig]:
    return {name: StrategyConfig() for name in strategy_names()}


class Settings(BaseSettings):
    """Everything tradebot is configured with; built once at startup and passed down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )
    toml_path: ClassVar[Path | None] = None

    data_source: str = "yfinance"
    db_path: Path = Field(default_factory=_default_db_path)
    cache_dir: Path | None = None
    watchlist: tuple[InstrumentConfig, ...] = Field(
        default_factory=lambda: tuple(InstrumentConfig.from_instrument(i) for i in DEFAULT_WATCHLIST)
    )
    strategies: dict[str, StrategyConfig] = Field(default_factory=_default_strategies)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    scan: ScanConfig = Field(default_factory=ScanConfig)
    bot: BotConfig = Field(default_factory=BotConfig)
    backtest: BacktestSettings = Field(default_factory=BacktestSettings)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    learning: LearningSettings = Field(default_factory=LearningSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    summary: SummarySettings = Field(default_factory=SummarySettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    secrets_id: str | None = None  # TRADEBOT_SECRETS_ID: an AWS Secrets Manager secret read at startup
    calendars: dict[str, CalendarConfig] = Field(default_factory=dict)
    clock_start: datetime | None = None
    clock_speed: Annotated[float, Field(gt=0, le=100_000)] = 1.0

    telegram_bot_token: SecretStr | None = Field(default=None, validation_alias="TELEGRAM_BOT_TOKEN")
    telegram_allowed_users: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(), validation_alias="TELEGRAM_ALLOWED_USERS"
    )
    telegram_chat_id: int | None = Field(default=None, validation_alias="TELEGRAM_CHAT_ID")
    # Who may close positions and move their stops (default: the first allowed user); must be an allowed user.
    telegram_owner_id: int | None = Field(default=None, validation_alias="TELEGRAM_OWNER_ID")
    telegram_api_base_url: str | None = Field(default=None, validation_alias="TELEGRAM_API_BASE_URL")
    oanda_token: SecretStr | None = Field(default=None, validation_alias="OANDA_TOKEN")

    def secret_values(self) -> list[str]:
        """Every secret value in the settings: masked wherever text leaves the process (logs, stderr, chat, DB)."""
        return [s.get_secret_value() for s in (self.telegram_bot_token, self.oanda_token) if s is not None]

    @field_validator("strategies", mode="before")
    @classmethod
    def _over_default_strategies(cls, value: Any) -> Any:
        """Strategies named in config override the built-in ones one by one; the others keep running.

        Naming one strategy (to set its parameters) never turns the others off; `enabled = false` does.
        """
        if isinstance(value, dict):
            return {**{name: {} for name in strategy_names()}, **value}
        return value

    @field_validator("telegram_allowed_users", mode="before")
    @classmethod
    def _allowed_users(cls, value: Any) -> Any:
        return _user_ids(value)

    @field_validator("clock_start")
    @classmethod
    def _utc_start(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must name its timezone, e.g. 2025-06-09T03:45:00Z")
        return None if value is None else value.astimezone(UTC)

    @field_validator("data_source")
    @classmethod
    def _data_source(cls, value: str) -> str:
        parse_source(value)  # a typo or a folder that is not there stops the command before it starts
        return value.strip()

    @model_validator(mode="after")
    def _broker_secret(self) -> Settings:
        if self.broker.kind is BrokerKind.OANDA and (
            self.oanda_token is None or not self.oanda_token.get_secret_value()
        ):
            raise ValueError("broker kind 'oanda' needs the OANDA_TOKEN environment variable")
        return self

    @model_validator(mode="after")
    def _owner_is_allowed(self) -> Settings:
        owner = self.telegram_owner_id
        if owner is not None and owner not in self.telegram_allowed_users:
            raise ValueError(f"TELEGRAM_OWNER_ID {owner} must be one of TELEGRAM_ALLOWED_USERS")
        return self

    @property
    def owner(self) -> int | None:
        """The user who may act on open positions: TELEGRAM_OWNER_ID, else the first allowed user."""
        if self.telegram_owner_id is not None:
            return self.telegram_owner_id
        return self.telegram_allowed_users[0] if self.telegram_allowed_users else None

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        symbols = [i.symbol for i in self.watchlist]
        duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
        if duplicates:
            raise ValueError(f"watchlist: symbol(s) listed twice: {', '.join(duplicates)}")
        known = set(strategy_names())
        for name, config in self.strategies.items():
            if name not in known:
                raise ValueError(f"strategies.{name}: unknown strategy; known: {', '.join(sorted(known))}")
            missing = sorted(set(config.symbols or ()) - set(symbols))
            if missing:
                raise ValueError(f"strategies.{name}.symbols: not in the watchlist: {', '.join(missing)}")
            strategy_params(name, config.params)
            for symbol in config.pairs:
                if symbol not in symbols:
                    raise ValueError(f"strategies.{name}.pairs.{symbol}: not in the watchlist")
                try:
                    strategy_params(name, config.params_for(symbol))
                except ValueError as exc:
                    raise ValueError(f"{exc} (strategies.{name}.pairs.{symbol})") from None
        for name in self.calendars:
            if name not in BUILTIN_CALENDARS:
                raise ValueError(
                    f"calendars.{name}: unknown market calendar; known: {', '.join(sorted(BUILTIN_CALENDARS))}"
                )
        for schedule in self.bot.schedules:
            missing = sorted(set(schedule.symbols or ()) - set(symbols))
            if missing:
                raise ValueError(f"bot.schedules.{schedule.name}.symbols: not in the watchlist: {', '.join(missing)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        del file_secret_settings, dotenv_settings
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, _OwnDotEnv(settings_cls)]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)

    @model_validator(mode="after")
    def _calendar_overrides(self) -> Settings:
        for name, config in self.calendars.items():
            if name in BUILTIN_CALENDARS:
                config.check(name)
        return self

    def calendar(self, name: str) -> SessionCalendar:
        """The market calendar `name` (exchange holidays from exchange_calendars) with its configured overrides."""
        base = market_calendar(name)
        extra = self.calendars.get(name)
        return extra.apply(base) if extra is not None else base

    @property
    def instruments(self) -> tuple[Instrument, ...]:
        return tuple(i.to_instrument() for i in self.watchlist)

    def engine_config(self) -> EngineConfig:
        v = self.validation
        rules = ValidationRules(v.min_stop_ticks, v.min_stop_spreads, v.max_setup_age_bars)
        weights = QualityWeights({Component(k): w for k, w in self.quality.weights.items()})
        return EngineConfig(rules, QualityScorer(weights), self.quality.min_score)

    def build_strategies(self) -> list[tuple[Strategy[Any], frozenset[str] | None]]:
        """Enabled strategies with their strategy-wide parameters and the symbols each is restricted to (None: all
        it applies to). What trades on a symbol is `traded_pairs`' (pair parameters included)."""
        built: list[tuple[Strategy[Any], frozenset[str] | None]] = []
        for name, config in sorted(self.strategies.items()):
            if config.enabled:
                allowed = frozenset(config.symbols) if config.symbols is not None else None
                built.append((REGISTRY[name](strategy_params(name, config.params)), allowed))
        return built

    def traded_pairs(self) -> list[tuple[Strategy[Any], Instrument]]:
        """Every enabled strategy on every watchlist instrument it applies to (and is allowed on), each with the
        exact parameters it trades there, in watchlist order."""
        pairs: list[tuple[Strategy[Any], Instrument]] = []
        for instrument in self.instruments:
            for shared, allowed in self.build_strategies():
                if not shared.applies_to(instrument) or (allowed is not None and instrument.symbol not in allowed):
                    continue
                config = self.strategies[shared.name]
                own = instrument.symbol in config.pairs
                params = strategy_params(shared.name, config.params_for(instrument.symbol)) if own else None
                pairs.append((REGISTRY[shared.name](params) if own else shared, instrument))
        return pairs

    def tuned_until(self, strategy: str, symbol: str) -> datetime | None:
        """Until when the parameters `strategy` trades on `symbol` were tuned (None: not tuned on data)."""
        config = self.strategies.get(strategy)
        return None if config is None else config.tuned_until_for(symbol)


def strategy_params(name: str, raw: Mapping[str, Any]) -> StrategyParams:
    """Type-check a strategy's parameters from config into its frozen params dataclass."""
    cls = REGISTRY[name].params_type
    unknown = sorted(set(raw) - cls.names())
    if unknown:
        allowed = ", ".join(sorted(cls.names()))
        raise ValueError(f"strategies.{name}.params: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
    try:
        return TypeAdapter(cls).validate_python(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"strategies.{name}.params.{where}: {first['msg']} (got {first.get('input')!r})") from None


_SECRET_WORDS = ("token", "secret", "password", "key", "credential")


def _describe(error: Mapping[str, Any]) -> str:
    parts = [str(p) for p in error["loc"]]
    where = ".".join(parts)
    if error["type"] == "extra_forbidden":
        msg, given = "unknown key (check the spelling against README's configuration table)", None
    else:
        msg, given = str(error["msg"]).removeprefix("Value error, "), error.get("input")
    shown = ""
    if any(word in where.lower() for word in _SECRET_WORDS):
        shown = " (value hidden)" if given is not None else ""
    elif not isinstance(given, dict | list | tuple) and given is not None and repr(given) not in msg:
        shown = f" (got {given!r})"
    if not parts:
        return f"{msg}{shown}"
    if parts[0].upper().startswith(ENV_PREFIX):  # an unknown key from `.env` arrives under its raw name
        return f"{parts[0].upper()}: {msg}{shown}"
    hint = f" [env {ENV_PREFIX}{parts[0].upper()}]" if len(parts) == 1 and not parts[0].isupper() else ""
    return f"{where}{hint}: {msg}{shown}"


# TRADEBOT_ variables read outside the settings model.
OTHER_ENV: Final = frozenset({CONFIG_ENV})


def env_names(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every environment name a setting can be given by (`BOT__RISK_PER_TRADE`, after the prefix); `*` for a free
    key. `model` None: the settings themselves."""
    model = Settings if model is None else model
    names: list[str] = []
    for field, info in model.model_fields.items():
        if isinstance(info.validation_alias, str):  # read under its own name (TELEGRAM_BOT_TOKEN), not the prefix's
            continue
        name = f"{prefix}{field.upper()}"
        names.append(name)
        value = _dict_value_of(info.annotation)
        inner = None if value is not None else _model_of(info.annotation)
        if inner is not None:
            names += env_names(inner, f"{name}__")
        elif value is not None:
            names.append(f"{name}__*")
            if (inner := _model_of(value)) is not None:
                names += env_names(inner, f"{name}__*__")
    return names


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The settings model an annotation holds (through Optional and Annotated), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        return next((m for a in typing.get_args(annotation) if (m := _model_of(a)) is not None), None)
    return None


def _dict_value_of(annotation: Any) -> Any:
    """The value type of a `dict[str, X]` annotation (through Optional), or None."""
    origin = typing.get_origin(annotation)
    if origin is dict:
        return typing.get_args(annotation)[1]
    if origin in (typing.Union, types.UnionType):
        return next((v for a in typing.get_args(annotation) if (v := _dict_value_of(a)) is not None), None)
    return None


def _aliases() -> list[str]:
    """The names settings read without the prefix (TELEGRAM_BOT_TOKEN, OANDA_TOKEN...)."""
    return [a for f in Settings.model_fields.values() if isinstance(a := f.validation_alias, str)]


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """A line for every TRADEBOT_ variable no setting reads, naming the nearest valid name."""
    known = [f"{ENV_PREFIX}{n}" for n in env_names()] + sorted(OTHER_ENV)
    patterns = [re.compile(re.escape(n).replace(r"\*", "[^_]+(?:_[^_]+)*") + "$") for n in known]
    lines = []
    for key in sorted(environ):
        name = key.upper()
        if not name.startswith(ENV_PREFIX) or any(p.match(name) for p in patterns):
            continue
        tail = name.rsplit("__", 1)[-1].removeprefix(ENV_PREFIX)
        same_tail = [n for n in known if n.rsplit("__", 1)[-1].removeprefix(ENV_PREFIX) == tail and "*" not in n]
        same_tail += [a for a in _aliases() if a == tail]
        plain = [n for n in known if "*" not in n] + _aliases()
        close = same_tail or difflib.get_close_matches(name, plain, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; see the README's configuration table"
        lines.append(f"{key}: no setting has this name{hint}")
    return lines


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The TOML config file settings come from (`TRADEBOT_CONFIG`, else `tradebot.toml`), whether or not it exists."""
    env = os.environ if environ is None else environ
    return Path(env.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Load settings from the environment, `.env` and the config file; raise ConfigError on any problem."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV)
    path = config_path(env)
    if explicit and not path.is_file():
        raise ConfigError(f"{CONFIG_ENV}: config file not found: {path}")
    unknown = unknown_env(env)
    if unknown:
        raise ConfigError("unknown environment variable(s):\n  " + "\n  ".join(unknown))
    toml_path = path if path.is_file() else None
    if toml_path is not None:
        try:
            with toml_path.open("rb") as handle:
                document = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml_path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{toml_path}: not UTF-8 text (at byte offset {exc.start}): save it as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"{toml_path}: cannot read it: {exc.strerror}") from None
        if "secrets_id" in document:
            raise ConfigError(
                f"{toml_path}: secrets_id: set TRADEBOT_SECRETS_ID in the environment or .env instead "
                "(the secret is read before the config file)"
            )
    try:
        secret = secret_overrides(env)
    except SecretsError as exc:
        raise SecretsUnavailable(str(exc)) if exc.transient else ConfigError(str(exc)) from None
    bound = type("Settings", (Settings,), {"toml_path": toml_path})
    try:
        return bound(**{**secret, **overrides})
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        source = f" (config file {toml_path})" if toml_path else ""
        raise ConfigError(f"invalid configuration{source}:\n  " + "\n  ".join(lines)) from None
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
