"""Protections: account and symbol guards that block NEW entries (exits always run).

Pure: the caller builds a `BookView` from the store and passes the time; nothing here reads a clock or does
I/O. `check_entry` lists every protection that blocks one candidate entry, `status` the account-level
blocks active now (for /status), `alerts` the warnings that do not block (a drawdown configured as
alert-only). Money is `Decimal`; floats appear only inside the correlation kernel.

Shadow trades (hypothetical outcomes of signals not taken) never count: they are not positions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Final

import numpy as np
from numpy.typing import NDArray

from engine.domain import Side, ensure_utc
from engine.trading import Trade, TradeKind

MIN_CORRELATION_POINTS: Final = 20  # fewer overlapping returns than this: the correlation guard is skipped
_CENT: Final = Decimal("0.01")
_ZERO: Final = Decimal(0)
_UNCOUNTED_KINDS: Final = frozenset({TradeKind.SHADOW})


class ProtectionKind(StrEnum):
    """Which guard produced a block; the enum order is the order `check_entry` reports in."""

    MAX_OPEN_POSITIONS = "max_open_positions"
    ONE_PER_SYMBOL = "one_per_symbol"
    MAX_TRADES_PER_DAY = "max_trades_per_day"
    DAILY_LOSS = "daily_loss"
    CONSECUTIVE_LOSSES = "consecutive_losses"
    MAX_DRAWDOWN = "max_drawdown"
    SYMBOL_COOLDOWN = "symbol_cooldown"
    CORRELATION = "correlation"
    BLOCKED_HOURS = "blocked_hours"


@dataclass(frozen=True, slots=True)
class ProtectionConfig:
    """Limits of every protection; None (or a zero cooldown) turns a guard off."""

    max_open_positions: int = 5
    one_position_per_symbol: bool = True
    max_trades_per_day: int | None = 10
    daily_loss_money: Decimal | None = None  # in account money
    daily_loss_fraction: Decimal | None = Decimal("0.03")  # of equity at the start of the day
    max_consecutive_losses: int | None = 3
    max_drawdown_fraction: Decimal | None = Decimal("0.15")  # from the realised equity peak
    pause_on_drawdown: bool = False  # False: the drawdown is reported as an alert and does not block
    symbol_cooldown: timedelta = timedelta(hours=2)  # after an exit on that symbol
    correlation_threshold: float | None = 0.8
    correlation_lookback: int = 100  # bars of returns
    blocked_hours: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # strategy -> local hours

    def __post_init__(self) -> None:
        _check_int("max_open_positions", self.max_open_positions, minimum=1)
        if self.max_trades_per_day is not None:
            _check_int("max_trades_per_day", self.max_trades_per_day, minimum=1)
        if self.max_consecutive_losses is not None:
            _check_int("max_consecutive_losses", self.max_consecutive_losses, minimum=1)
        if self.daily_loss_money is not None:
            _check_decimal("daily_loss_money", self.daily_loss_money)
            if self.daily_loss_money <= 0:
                raise ValueError(f"daily_loss_money must be positive when set, was {self.daily_loss_money}")
        for name, fraction in (
            ("daily_loss_fraction", self.daily_loss_fraction),
            ("max_drawdown_fraction", self.max_drawdown_fraction),
        ):
            if fraction is not None:
                _check_decimal(name, fraction)
                if not 0 < fraction < 1:
                    raise ValueError(f"{name} must be within (0, 1) when set, was {fraction}")
        if self.symbol_cooldown < timedelta(0):
            raise ValueError(f"symbol_cooldown must not be negative, was {self.symbol_cooldown}")
        if self.correlation_threshold is not None and not 0 < self.correlation_threshold <= 1:
            # NaN fails the comparison too
            raise ValueError(f"correlation_threshold must be within (0, 1] when set, was {self.correlation_threshold}")
        _check_int("correlation_lookback", self.correlation_lookback, minimum=MIN_CORRELATION_POINTS)
        normalised: dict[str, tuple[int, ...]] = {}
        for strategy, hours in self.blocked_hours.items():
            if not strategy or not strategy.strip():
                raise ValueError("blocked_hours strategy names must not be empty")
            for hour in hours:
                if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
                    raise ValueError(f"blocked_hours for {strategy} must be hours within 0..23, got {hour!r}")
            normalised[strategy] = tuple(sorted(set(hours)))
        object.__setattr__(self, "blocked_hours", MappingProxyType(normalised))


@dataclass(frozen=True, slots=True)
class Block:
    """One protection holding back new entries (or, when `alert_only`, only warning)."""

    kind: ProtectionKind
    reason: str  # human, names the numbers
    until: datetime | None = None  # when it lifts, if known
    pauses: bool = False  # a pause that persists until a time or a reset, not a per-candidate refusal
    alert_only: bool = False  # reported, never blocks an entry

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError(f"a {self.kind} block must give a reason")
        if self.until is not None:
            ensure_utc(self.until, "block until")
        if self.pauses and self.alert_only:
            raise ValueError(f"a {self.kind} block cannot both pause entries and be alert-only")


@dataclass(frozen=True, slots=True)
class Candidate:
    """An entry about to be offered or executed."""

    symbol: str
    side: Side
    strategy: str
    at: datetime  # UTC
    local_hour: int  # the exchange-local hour of `at`, computed by the caller

    def __post_init__(self) -> None:
        if not self.symbol.strip():
            raise ValueError("candidate symbol must not be empty")
        if not self.strategy.strip():
            raise ValueError(f"candidate strategy must not be empty for {self.symbol}")
        ensure_utc(self.at, "candidate time")
        _check_int("local_hour", self.local_hour, minimum=0, maximum=23)


@dataclass(frozen=True, slots=True)
class BookView:
    """What the protections look at, built by the caller from the store.

    `closed_trades` must reach back far enough for today's trades, the current loss streak and the last
    exit of each symbol within the cooldown; any order. `returns` holds recent close-to-close returns per
    symbol, aligned at the end (the last element is the latest bar).
    """

    open_trades: Sequence[Trade]
    closed_trades: Sequence[Trade]
    equity: Decimal  # current realised equity
    equity_peak: Decimal  # highest realised equity seen
    day_start: datetime  # start (UTC) of the current trading day/session
    next_session: datetime  # when a daily pause lifts
    returns: Mapping[str, Sequence[float] | NDArray[np.float64]] = field(default_factory=dict)
    account_pnl: Mapping[str, Decimal] = field(default_factory=dict)  # closed P&L in account money, by trade id

    def pnl(self, trade: Trade) -> Decimal:
        """A closed trade's net P&L in the account's money (its own P&L when no conversion was given)."""
        converted = self.account_pnl.get(trade.trade_id)
        return converted if converted is not None else _pnl(trade)

    def __post_init__(self) -> None:
        _check_decimal("equity", self.equity)
        _check_decimal("equity_peak", self.equity_peak)
        if self.equity_peak < self.equity:
            raise ValueError(f"equity_peak must be at least the equity, was {self.equity_peak} < {self.equity}")
        ensure_utc(self.day_start, "day_start")
        ensure_utc(self.next_session, "next_session")
        if self.next_session <= self.day_start:
            raise ValueError(f"next_session must be after day_start, was {self.next_session} <= {self.day_start}")
        for trade in self.open_trades:
            if not trade.is_open:
                raise ValueError(f"open_trades must hold open trades only, trade {trade.trade_id} is closed")
        for trade in self.closed_trades:
            if trade.is_open:
                raise ValueError(f"closed_trades must hold closed trades only, trade {trade.trade_id} is open")


def check_entry(config: ProtectionConfig, view: BookView, candidate: Candidate) -> list[Block]:
    """Return every protection blocking this entry, in `ProtectionKind` order; empty means allowed."""
    open_trades = _counted(view.open_trades)
    closed = _counted(view.closed_trades)
    blocks: list[Block] = []
    if len(open_trades) >= config.max_open_positions:
        blocks.append(
            Block(
                ProtectionKind.MAX_OPEN_POSITIONS,
                f"max open positions: {len(open_trades)} open >= limit {config.max_open_positions}",
            )
        )
    if config.one_position_per_symbol:
        held = [t for t in open_trades if t.symbol == candidate.symbol]
        if held:
            first = held[0]
            blocks.append(
                Block(
                    ProtectionKind.ONE_PER_SYMBOL,
                    f"one position per symbol: already holding {first.symbol} {first.side.value} "
                    f"(trade {first.trade_id})",
                )
            )
    blocks.extend(_account_blocks(config, view, open_trades, closed))
    blocks.extend(_cooldown_blocks(config, closed, candidate))
    blocks.extend(_correlation_blocks(config, view, open_trades, candidate))
    if candidate.local_hour in config.blocked_hours.get(candidate.strategy, ()):
        blocks.append(
            Block(
                ProtectionKind.BLOCKED_HOURS,
                f"blocked hours: {candidate.strategy} takes no entries at {candidate.local_hour:02d}:00-"
                f"{candidate.local_hour:02d}:59 exchange time",
            )
        )
    return _active(blocks, candidate.at)


def status(config: ProtectionConfig, view: BookView, now: datetime) -> list[Block]:
    """Return the account-level blocks active at `now`: trades per day, daily loss, loss streak, drawdown pause."""
    ensure_utc(now, "now")
    blocks = _account_blocks(config, view, _counted(view.open_trades), _counted(view.closed_trades))
    return _active(blocks, now)


def alerts(config: ProtectionConfig, view: BookView) -> list[Block]:
    """Return the alert-only warnings (a drawdown past its limit when `pause_on_drawdown` is off)."""
    block = _drawdown_block(config, view)
    return [block] if block is not None and block.alert_only else []


def _account_blocks(
    config: ProtectionConfig, view: BookView, open_trades: list[Trade], closed: list[Trade]
) -> list[Block]:
    blocks: list[Block] = []
    until = view.next_session
    if config.max_trades_per_day is not None:
        entered = {t.trade_id for t in (*open_trades, *closed) if t.entry_time >= view.day_start}
        if len(entered) >= config.max_trades_per_day:
            blocks.append(
                Block(
                    ProtectionKind.MAX_TRADES_PER_DAY,
                    f"max trades per day: {len(entered)} entered today >= limit {config.max_trades_per_day}; "
                    f"no new entries until {_when(until)}",
                    until=until,
                )
            )
    daily = _daily_loss_block(config, view, closed)
    if daily is not None:
        blocks.append(daily)
    streak = _streak_block(config, view, closed)
    if streak is not None:
        blocks.append(streak)
    drawdown = _drawdown_block(config, view)
    if drawdown is not None and not drawdown.alert_only:
        blocks.append(drawdown)
    return blocks


def _daily_loss_block(config: ProtectionConfig, view: BookView, closed: list[Trade]) -> Block | None:
    if config.daily_loss_money is None and config.daily_loss_fraction is None:
        return None
    today = sum((view.pnl(t) for t in closed if _exit(t) >= view.day_start), _ZERO)
    start_equity = view.equity - today  # realised equity includes today's P&L
    limits: list[tuple[Decimal, str]] = []
    if config.daily_loss_money is not None:
        limits.append((config.daily_loss_money, ""))
    if config.daily_loss_fraction is not None and start_equity > 0:
        limits.append(
            (
                config.daily_loss_fraction * start_equity,
                f" ({_percent(config.daily_loss_fraction)} of {start_equity:.2f} at the day start)",
            )
        )
    if not limits:
        return None
    limit, detail = min(limits, key=lambda item: item[0])  # the tighter limit decides
    if today > -limit:
        return None
    return Block(
        ProtectionKind.DAILY_LOSS,
        f"daily loss limit: {_money(today)} today <= {_money(-limit)}{detail}; "
        f"entries paused until the next session at {_when(view.next_session)}",
        until=view.next_session,
        pauses=True,
    )


def _streak_block(config: ProtectionConfig, view: BookView, closed: list[Trade]) -> Block | None:
    """Pause when the latest N closed trades all lost; a win, a break-even or a served pause resets the streak.

    A pause set off by a loss before `day_start` has lifted at a session start no later than `day_start`,
    so the streak starts over after it: the trader gets a fresh run after sitting out a session.
    """
    limit = config.max_consecutive_losses
    if limit is None:
        return None
    streak: list[Trade] = []
    for trade in sorted(closed, key=lambda t: (_exit(t), t.entry_time, t.trade_id)):
        if view.pnl(trade) >= 0:
            streak = []
            continue
        streak.append(trade)
        if len(streak) >= limit and _exit(trade) < view.day_start:
            streak = []  # this pause was served
    if len(streak) < limit:
        return None
    total = sum((view.pnl(t) for t in streak), _ZERO)
    return Block(
        ProtectionKind.CONSECUTIVE_LOSSES,
        f"consecutive losses: {len(streak)} losing trades in a row (limit {limit}, {_money(total)} in all); "
        f"entries paused until the next session at {_when(view.next_session)}",
        until=view.next_session,
        pauses=True,
    )


def _drawdown_block(config: ProtectionConfig, view: BookView) -> Block | None:
    fraction = config.max_drawdown_fraction
    if fraction is None or view.equity_peak <= 0:
        return None
    drawdown = (view.equity_peak - view.equity) / view.equity_peak
    if drawdown < fraction:
        return None
    head = (
        f"max drawdown: {_percent(drawdown)} below the peak {view.equity_peak:.2f} "
        f"(equity {view.equity:.2f}) >= limit {_percent(fraction)}"
    )
    if config.pause_on_drawdown:
        return Block(
            ProtectionKind.MAX_DRAWDOWN, f"{head}; entries paused until equity recovers or a reset", pauses=True
        )
    return Block(ProtectionKind.MAX_DRAWDOWN, f"{head}; alert only, entries continue", alert_only=True)


def _cooldown_blocks(config: ProtectionConfig, closed: list[Trade], candidate: Candidate) -> list[Block]:
    if config.symbol_cooldown <= timedelta(0):
        return []
    exits = [_exit(t) for t in closed if t.symbol == candidate.symbol]
    if not exits:
        return []
    last = max(exits)
    until = last + config.symbol_cooldown
    if candidate.at >= until:
        return []
    return [
        Block(
            ProtectionKind.SYMBOL_COOLDOWN,
            f"symbol cooldown: {candidate.symbol} exited at {_when(last)}; no new entry on it until {_when(until)}",
            until=until,
        )
    ]


def _correlation_blocks(
    config: ProtectionConfig, view: BookView, open_trades: list[Trade], candidate: Candidate
) -> list[Block]:
    threshold = config.correlation_threshold
    mine = view.returns.get(candidate.symbol)
    if threshold is None or mine is None:
        return []
    others = sorted({t.symbol for t in open_trades if t.symbol != candidate.symbol and t.side is candidate.side})
    blocks: list[Block] = []
    for symbol in others:
        theirs = view.returns.get(symbol)
        if theirs is None:
            continue
        corr = _tail_correlation(mine, theirs, config.correlation_lookback)
        if corr is not None and corr >= threshold:
            blocks.append(
                Block(
                    ProtectionKind.CORRELATION,
                    f"correlation: {candidate.symbol} {candidate.side.value} correlates {corr:.2f} with the open "
                    f"{symbol} {candidate.side.value} (limit {threshold:.2f})",
                )
            )
    return blocks


def _tail_correlation(
    a: Sequence[float] | NDArray[np.float64], b: Sequence[float] | NDArray[np.float64], lookback: int
) -> float | None:
    """Pearson correlation of the last `lookback` end-aligned returns where both are finite; None if too few."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    n = min(len(x), len(y), lookback)
    if n < MIN_CORRELATION_POINTS:
        return None
    x, y = x[len(x) - n :], y[len(y) - n :]
    finite = np.isfinite(x) & np.isfinite(y)
    if int(finite.sum()) < MIN_CORRELATION_POINTS:
        return None
    x, y = x[finite], y[finite]
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(np.dot(dx, dx)) * float(np.dot(dy, dy)))
    if denominator == 0.0 or not math.isfinite(denominator):
        return None  # a flat series has no correlation
    return float(np.dot(dx, dy)) / denominator


def _active(blocks: list[Block], now: datetime) -> list[Block]:
    """Drop blocks that have lifted by `now` (a stale view's daily pause ends at its next session)."""
    return [b for b in blocks if b.until is None or now < b.until]


def _counted(trades: Iterable[Trade]) -> list[Trade]:
    return [t for t in trades if t.kind not in _UNCOUNTED_KINDS]


def _exit(trade: Trade) -> datetime:
    if trade.exit_time is None:  # BookView checks closed_trades are closed
        raise ValueError(f"trade {trade.trade_id} is open, expected a closed trade")
    return trade.exit_time


def _pnl(trade: Trade) -> Decimal:
    if trade.pnl is None:
        raise ValueError(f"trade {trade.trade_id} is open, expected a closed trade")
    return trade.pnl


def _money(value: Decimal) -> str:
    return f"{value.quantize(_CENT):.2f}"


def _percent(fraction: Decimal) -> str:
    return f"{fraction * 100:.1f}%"


def _when(ts: datetime) -> str:
    return f"{ts:%Y-%m-%d %H:%M} UTC"


def _check_int(name: str, value: int, *, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, was {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, was {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, was {value}")


def _check_decimal(name: str, value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{name} must be a finite Decimal, was {value!r}")
