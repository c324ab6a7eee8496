"""Domain types: instruments, setups, quality scores, rejections.

Prices and sizes are `Decimal` quantised to the instrument's tick at this boundary; floats live only
inside the numpy kernels that produce candidates. Every type is immutable and checks its invariants at
construction with a message that names the rule.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Decimal,
    InvalidOperation,
    getcontext,
    localcontext,
)
from enum import StrEnum
from functools import lru_cache
from typing import Final, cast


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        return 1 if self is Side.LONG else -1

    @property
    def opposite(self) -> Side:
        return Side.SHORT if self is Side.LONG else Side.LONG


class AssetClass(StrEnum):
    EQUITY = "equity"
    ETF = "etf"
    INDEX = "index"
    FX = "fx"
    METAL = "metal"
    CRYPTO = "crypto"


class Interval(StrEnum):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"

    @property
    def delta(self) -> timedelta:
        return _INTERVAL_DELTAS[self]

    @property
    def nanos(self) -> int:
        return int(self.delta.total_seconds()) * 1_000_000_000

    @property
    def is_intraday(self) -> bool:
        return self.delta < timedelta(days=1)


_INTERVAL_DELTAS: Final = {
    Interval.M1: timedelta(minutes=1),
    Interval.M5: timedelta(minutes=5),
    Interval.M15: timedelta(minutes=15),
    Interval.M30: timedelta(minutes=30),
    Interval.H1: timedelta(hours=1),
    Interval.H4: timedelta(hours=4),
    Interval.D1: timedelta(days=1),
}


class SignalStatus(StrEnum):
    """Lifecycle of a signal; `SIGNAL_TRANSITIONS` says which moves are legal."""

    NEW = "new"  # found by a run, not offered yet
    PENDING = "pending"  # offered to the trader, waiting for Approve / Reject
    APPROVED = "approved"
    ORDER_SUBMITTED = "order_submitted"
    FILLED = "filled"
    FAILED = "failed"  # approved, but the order could not be placed or was refused at click time
    REJECTED = "rejected"
    EXPIRED = "expired"
    DROPPED = "dropped"  # never offered: duplicate, cooldown, below the ask threshold, bot paused

    @property
    def is_final(self) -> bool:
        return not SIGNAL_TRANSITIONS[self]


SIGNAL_TRANSITIONS: Final[dict[SignalStatus, frozenset[SignalStatus]]] = {
    SignalStatus.NEW: frozenset({SignalStatus.PENDING, SignalStatus.APPROVED, SignalStatus.DROPPED}),
    SignalStatus.PENDING: frozenset({SignalStatus.APPROVED, SignalStatus.REJECTED, SignalStatus.EXPIRED}),
    SignalStatus.APPROVED: frozenset({SignalStatus.ORDER_SUBMITTED, SignalStatus.FAILED}),
    SignalStatus.ORDER_SUBMITTED: frozenset({SignalStatus.FILLED, SignalStatus.FAILED}),
    SignalStatus.FILLED: frozenset(),
    SignalStatus.FAILED: frozenset(),
    SignalStatus.REJECTED: frozenset(),
    SignalStatus.EXPIRED: frozenset(),
    SignalStatus.DROPPED: frozenset(),
}


class RunStatus(StrEnum):
    """Lifecycle of one analysis run."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class RejectionKind(StrEnum):
    SETUP = "setup"
    SYMBOL = "symbol"


_ZERO: Final = timedelta(0)


def ensure_utc(ts: datetime, name: str) -> datetime:
    """Return `ts` if it is timezone-aware UTC, else raise naming the field."""
    if ts.tzinfo is not UTC and (ts.tzinfo is None or ts.utcoffset() != _ZERO):
        raise ValueError(f"{name} must be a timezone-aware UTC datetime, was {ts!r}")
    return ts


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 trade`, `2 trades` (or the given plural form)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def human_duration(delta: timedelta) -> str:
    """A short human reading of a duration: "45 min", "3.5 h", "2.0 days"."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} days"


def to_decimal(value: float | int | str | Decimal, name: str) -> Decimal:
    """Convert a number to a finite Decimal via its shortest repr (no binary float artefacts)."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, was {value!r}")
        result = Decimal(repr(value))
    else:
        try:
            result = Decimal(str(value))
        except InvalidOperation as exc:
            raise ValueError(f"{name} must be a decimal number, was {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"{name} must be a finite number, was {value!r}")
    return result


def quantize_to_step(value: Decimal, step: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """Round `value` to a whole multiple of `step` with the given rounding mode.

    Exact for every finite input: the working precision grows with the digits involved, so a huge price
    neither raises `InvalidOperation` nor lands on the wrong side of a rounding boundary.
    """
    step_exp, step_digits = _step_shape(step)
    if step_digits == 0 and value.is_finite() and value.adjusted() - step_exp < getcontext().prec - 2:
        return value.quantize(step, rounding=rounding)  # a power-of-ten step: one exact quantize
    value_exp = cast(int, value.as_tuple().exponent)  # finite only
    digits = max(value.adjusted(), step.adjusted()) - min(value_exp, step_exp) + max(step_digits, 1) + 10
    if digits <= getcontext().prec:  # ordinary prices: the default precision is already exact
        units = (value / step).to_integral_value(rounding=rounding)
        return (units * step).quantize(step)
    with localcontext() as ctx:
        ctx.prec = digits
        units = (value / step).to_integral_value(rounding=rounding)
        return (units * step).quantize(step)


FAST_MAX_STEPS: Final = float(2**36)  # beyond this many steps a double's error nears 1e-5 step: use Decimal
HALF_MARGIN: Final = 1e-3  # a float within this of a half step is decided by Decimal
_HALF_MODES: Final = frozenset({ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_HALF_DOWN})


def quantize_float(value: float, step: Decimal, rounding: str = ROUND_HALF_EVEN, name: str = "value") -> Decimal:
    """Round a float to a whole multiple of `step`: exactly `quantize_to_step(to_decimal(value), step, rounding)`.

    The float's shortest repr is the number meant (as in `to_decimal`). Fast path without building that
    Decimal: with r the nearest whole number of steps and b the double nearest r x step, the repr lies above
    r x step exactly when value > b (rounding to the nearest double is monotone and the repr rounds back to
    value), which decides floor and ceiling; nearest-modes take r unless the float sits within a hair of a
    half step. Anything the fast path cannot decide goes through Decimal.
    """
    units = float_units(value, step, rounding)
    if units is not None:
        return Decimal(units) * step
    return quantize_to_step(to_decimal(value, name), step, rounding)


def float_units(value: float, step: Decimal, rounding: str = ROUND_HALF_EVEN) -> int | None:
    """The whole steps `quantize_float` rounds a float to, where its fast path decides them (else None)."""
    shape = float_step(step)
    if shape is None or not math.isfinite(value):
        return None
    scale, divide = shape
    n = value * scale if divide else value / scale
    if abs(n) >= FAST_MAX_STEPS:
        return None
    r = round(n)
    base = r / scale if divide else r * scale
    if value == base:
        return r
    if rounding == ROUND_FLOOR:
        return r if value > base else r - 1
    if rounding == ROUND_CEILING:
        return r + 1 if value > base else r
    if rounding in _HALF_MODES and abs(abs(n - r) - 0.5) > HALF_MARGIN:
        return r
    return None


@lru_cache(maxsize=256)
def float_step(step: Decimal) -> tuple[float, bool] | None:
    """(k, True) when step = 1/k, (k, False) when step = k, k a whole number a double holds exactly; else None."""
    if not step.is_finite() or step <= 0 or cast(int, step.as_tuple().exponent) > 0:
        return None
    if step >= 1 and step == step.to_integral_value():
        return (float(step), False) if step < 2**53 else None
    inverse = Decimal(1) / step
    if inverse == inverse.to_integral_value() and inverse < 2**53:
        return float(inverse), True
    return None


@lru_cache(maxsize=256)
def _step_shape(step: Decimal) -> tuple[int, int]:
    """Exponent and digit count of a step, digit count 0 for a power of ten (ticks repeat, so this is cached)."""
    shape = step.as_tuple()
    if shape.digits == (1,) and not shape.sign:
        return cast(int, shape.exponent), 0
    return cast(int, shape.exponent), len(shape.digits)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable instrument as configured in the watchlist."""

    symbol: str
    ticker: str
    asset_class: AssetClass
    interval: Interval
    tick_size: Decimal
    pip_size: Decimal
    lot_size: Decimal
    contract_size: Decimal
    calendar: str
    timezone: str
    spread: Decimal = Decimal(0)
    has_volume: bool = True

    def __post_init__(self) -> None:
        if not self.symbol or not self.symbol.strip():
            raise ValueError("symbol must not be empty")
        for name in ("tick_size", "pip_size", "lot_size", "contract_size"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ValueError(f"{name} must be a positive decimal for {self.symbol}, was {value!r}")
        if not isinstance(self.spread, Decimal) or not self.spread.is_finite() or self.spread < 0:
            raise ValueError(f"spread must be a non-negative decimal for {self.symbol}, was {self.spread!r}")

    @property
    def unit(self) -> str:
        """What a quantity of this instrument counts: shares, lots (FX and metals), contracts, or the coin."""
        if self.asset_class in (AssetClass.EQUITY, AssetClass.ETF):
            return "shares"
        if self.asset_class is AssetClass.INDEX:
            return "contracts"
        if self.asset_class is AssetClass.CRYPTO:
            symbol = self.symbol.upper()
            for quote in ("USDT", "USDC", "USD", "EUR", "BTC"):
                if symbol.endswith(quote) and len(symbol) > len(quote):
                    return symbol[: -len(quote)]
            return "coins"
        return "lots"

    def quantity_text(self, quantity: Decimal) -> str:
        """A quantity in this instrument's own unit: '280 shares', '0.32 lots', '0.05512 BTC'."""
        return f"{quantity} {self.unit}"

    def price(self, value: float | Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        """Quantise a price to this instrument's tick."""
        if isinstance(value, float):
            return quantize_float(value, self.tick_size, rounding, f"{self.symbol} price")
        return quantize_to_step(to_decimal(value, f"{self.symbol} price"), self.tick_size, rounding)


@dataclass(frozen=True, slots=True)
class ScoreComponent:
    """One named, weighted part of the quality score with its human-readable reason."""

    name: str
    value: float
    weight: float
    reason: str

    def __post_init__(self) -> None:
        if not (0.0 <= self.value <= 1.0) or math.isnan(self.value):
            raise ValueError(f"score component {self.name} value must be within 0..1, was {self.value}")
        if not (0.0 <= self.weight <= 1.0) or math.isnan(self.weight):
            raise ValueError(f"score component {self.name} weight must be within 0..1, was {self.weight}")

    @property
    def points(self) -> float:
        """Contribution before normalisation (value x weight)."""
        return self.value * self.weight


@dataclass(frozen=True, slots=True)
class QualityScore:
    """Total 0-100 score and the components it is the weighted mean of."""

    total: float
    components: tuple[ScoreComponent, ...]

    def __post_init__(self) -> None:
        if not (0.0 <= self.total <= 100.0) or math.isnan(self.total):
            raise ValueError(f"quality score must be within 0..100, was {self.total}")

    def top(self, n: int = 3) -> tuple[ScoreComponent, ...]:
        """Return the `n` components contributing most, largest first (ties by name)."""
        ranked = sorted(self.components, key=lambda c: (-c.points, c.name))
        return tuple(ranked[:n])

    def as_dict(self) -> dict[str, float]:
        return {c.name: c.value for c in self.components}


@dataclass(frozen=True, slots=True)
class Setup:
    """A validated trade setup: the strategy's proposal, quantised and checked."""

    strategy: str
    symbol: str
    side: Side
    entry: Decimal
    stop: Decimal
    targets: tuple[Decimal, ...]
    bar_time: datetime
    timeframe: Interval
    reasons: tuple[str, ...] = ()
    _signal_id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ensure_utc(self.bar_time, "bar_time")
        if not self.targets:
            raise ValueError(f"{self.symbol} {self.strategy}: a setup needs at least one target")
        for name, value in (("entry", self.entry), ("stop", self.stop), ("target", self.targets)):
            for v in value if isinstance(value, tuple) else (value,):
                if not isinstance(v, Decimal) or not v.is_finite() or v <= 0:
                    raise ValueError(f"{name} must be a positive finite decimal, was {v!r}")
        if self.side is Side.LONG:
            if self.stop >= self.entry:
                raise ValueError(f"stop must be below entry for a long, was {self.stop} vs entry {self.entry}")
            if any(t <= self.entry for t in self.targets):
                raise ValueError(f"targets must be above entry for a long, were {list(map(str, self.targets))}")
        else:
            if self.stop <= self.entry:
                raise ValueError(f"stop must be above entry for a short, was {self.stop} vs entry {self.entry}")
            if any(t >= self.entry for t in self.targets):
                raise ValueError(f"targets must be below entry for a short, were {list(map(str, self.targets))}")
        key = f"{self.strategy}|{self.symbol}|{self.timeframe}|{self.bar_time.isoformat()}|{self.side}"
        object.__setattr__(self, "_signal_id", hashlib.blake2b(key.encode(), digest_size=5).hexdigest())

    @property
    def target(self) -> Decimal:
        return self.targets[0]

    @property
    def risk(self) -> Decimal:
        """Distance from entry to stop in price units (always positive)."""
        return abs(self.entry - self.stop)

    @property
    def reward_risk(self) -> Decimal:
        """Reward:risk of the first target, to two decimals."""
        levels = (self.target, self.entry, self.risk)
        # A far-away target must not be rounded by the 28-digit default precision: size it to the operands.
        span = max(v.adjusted() for v in levels) - min(int(v.as_tuple().exponent) for v in levels)
        with localcontext() as ctx:
            ctx.prec = max(ctx.prec, span + 8)
            return (abs(self.target - self.entry) / self.risk).quantize(Decimal("0.01"))

    @property
    def signal_id(self) -> str:
        """Short deterministic id: the same setup seen by two scans gets the same id."""
        return self._signal_id


@dataclass(frozen=True, slots=True)
class ScoredSetup:
    setup: Setup
    score: QualityScore


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a setup or a whole symbol was not used in this run."""

    kind: RejectionKind
    symbol: str
    reason: str
    strategy: str | None = None
    bar_time: datetime | None = None
    detail: dict[str, str] = field(default_factory=dict)
