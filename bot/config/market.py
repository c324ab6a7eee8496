"""Settings of instruments, strategies, the score, validation, the gate, backtests, calendars and the scan."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.config.base import CURRENCY_PATTERN, PositiveDecimal, Weight, _Frozen
from engine.calendars import BUILTIN_CALENDARS, SessionCalendar, clock_text, get_calendar
from engine.domain import AssetClass, Instrument, Interval
from engine.exits import ExitPlan, TrailBy
from engine.quality import DEFAULT_WEIGHTS, Component
from engine.sizing import (
    SizeLimits,
)
from engine.strategy import REGISTRY, StrategyParams


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


class ExitsConfig(_Frozen):
    """Trade management of a strategy's positions (`engine.exits.ExitPlan`): the backtester, the replay and the live
    monitor apply the same, and the system's validation covers it (a change needs a new validation)."""

    breakeven_r: Annotated[float, Field(gt=0, le=20)] | None = None  # move the stop to the entry after +x R
    trail_by: TrailBy | None = None  # "r" or "atr": a trailing stop
    trail_distance: Annotated[float, Field(gt=0, le=50)] = 1.0  # in R or in ATR(14)
    trail_after_r: Annotated[float, Field(ge=0, le=20)] = 1.0  # the trail starts after +x R
    partials: tuple[tuple[Annotated[float, Field(gt=0, le=20)], Annotated[float, Field(gt=0, lt=1)]], ...] = ()

    def plan(self) -> ExitPlan:
        """The engine's exit plan (ValueError names a partial rule that does not add up)."""
        return ExitPlan(self.breakeven_r, self.trail_by, self.trail_distance, self.trail_after_r, self.partials)

    @model_validator(mode="after")
    def _adds_up(self) -> ExitsConfig:
        self.plan()
        return self


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
    exits: ExitsConfig = Field(default_factory=ExitsConfig)  # trade management (breakeven, trailing, partials)

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

    executor: str = "auto"  # auto, process, thread, serial, dask:local or dask://host:port
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


_ADAPTERS: dict[type[StrategyParams], TypeAdapter[StrategyParams]] = {}


def _adapter(cls: type[StrategyParams]) -> TypeAdapter[StrategyParams]:
    """The validator of one params dataclass, built once (building one is ~1.5 ms; settings build dozens)."""
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def strategy_params(name: str, raw: Mapping[str, Any]) -> StrategyParams:
    """Type-check a strategy's parameters from config into its frozen params dataclass."""
    cls = REGISTRY[name].params_type
    unknown = sorted(set(raw) - cls.names())
    if unknown:
        allowed = ", ".join(sorted(cls.names()))
        raise ValueError(f"strategies.{name}.params: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
    try:
        return _adapter(cls).validate_python(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"strategies.{name}.params.{where}: {first['msg']} (got {first.get('input')!r})") from None
