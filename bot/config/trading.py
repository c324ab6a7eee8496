"""Settings of the running bot: costs, schedules, protections, news, exposure, the desk and the broker."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from bot.config.base import CURRENCY_PATTERN, PAIR_PATTERN, PositiveDecimal, _Frozen
from data.market.news_feed import NewsSource
from engine.calendars import get_calendar
from engine.exposure import DEFAULT_MAX_LEVERAGE, DEFAULT_MAX_TOTAL_LEVERAGE, ExposureClass, ExposureLimits
from engine.news import EmbargoConfig, FeedFallback, Impact
from engine.protections import ProtectionConfig
from engine.routing import Market
from engine.trading import ExecutionMode


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


class AccountConfig(_Frozen):
    """`[bot.accounts.<market>]` (fx, nse, other): a routed broker account's money and its own protections."""

    currency: Annotated[str, Field(pattern=CURRENCY_PATTERN)]
    equity: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
    risk_per_trade: Annotated[Decimal, Field(gt=0, le=Decimal("0.05"), allow_inf_nan=False)] | None = None
    protections: ProtectionsConfig = Field(default_factory=ProtectionsConfig)


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
    charts: bool = True  # each signal as a photo of its chart (drawn in a worker process); false: text only
    trade_failed_strategies: bool = False  # override the pre-deploy gate (logged loudly on every signal)
    costs: CostsConfig = Field(default_factory=CostsConfig)
    exposure: ExposureConfig = Field(default_factory=ExposureConfig)
    protections: ProtectionsConfig = Field(default_factory=ProtectionsConfig)
    news: NewsConfig = Field(default_factory=NewsConfig)
    schedules: tuple[ScheduleConfig, ...] = ()
    # Routed broker accounts by market (fx, nse, other), each with its own money and protections; the markets
    # not listed trade in the account above. `[bot.protections]` stay the overall limits over all of them.
    accounts: dict[Market, AccountConfig] = Field(default_factory=dict)

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


class BrokerKind(StrEnum):
    PAPER = "paper"  # simulated fills against the bar provider (the default)
    OANDA = "oanda"  # OANDA v20 REST (practice by default)


class NseBroker(StrEnum):
    PAPER = "paper"
    KITE = "kite"  # Zerodha Kite Connect v3, with the owner's daily login


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
    nse: NseBroker = NseBroker.PAPER  # where NSE cash and F&O orders go; FX and gold follow `kind`
    kite_api_key: str = ""
    kite_base_url: str | None = None  # overrides https://api.kite.trade (a local test server)
    kite_login_url: str | None = None  # overrides https://kite.zerodha.com/connect/login
    kite_product: Literal["MIS", "CNC"] = "MIS"  # NSE cash: intraday (flat by 15:15 IST) or delivery
    kite_reminder_minutes: Annotated[int, Field(ge=5, le=600)] = 45  # before the NSE open, without a session
    nfo_freeze_quantity: Annotated[int, Field(ge=1, le=100_000)] = 1800  # NIFTY options: larger legs are split
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
        if self.nse is NseBroker.KITE and not self.kite_api_key.isalnum():
            raise ValueError("broker nse = 'kite' needs kite_api_key (the Kite Connect app's key)")
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


class WeeklyZonesConfig(_Frozen):
    """`[weekly_zones]`: the NIFTY weekly-zone system, offered as hedged option spreads (manual approval only)."""

    enabled: bool = False
    symbol: str = "NIFTY50"  # a watchlist index on the XNSE calendar; its hourly bars are built on the 09:15 grid
    lots: Annotated[int, Field(ge=1, le=1000)] = 1
    # Instead of fixed lots: as many lots as keep the spread's maximum loss (the 200-point width x the lot,
    # before the credit received) within this many INR; a spread whose one lot exceeds it is not offered.
    risk_per_spread: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)] | None = None
    wednesday_exit: bool = False  # exit at Wednesday's 14:15 bar close before a Thursday/Tuesday expiry
    paper: bool = False  # with nse = "kite": fill the legs on paper at Kite's quotes (modelled without a session)
