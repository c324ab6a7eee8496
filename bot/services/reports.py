"""The trader's reports, as data: profit, P&L by period, performance per pair and strategy, recent trades, balance
per account and open counts against their limits. Rendered by the chat (`bot.telegram.reports`) and the CLI.

Money is the account currency, exact; R is net of costs. Periods are UTC calendar days, ISO weeks and months of
each trade's exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from bot.services.systems import SystemBook
from engine.performance import BREAKEVEN_BAND, PerformanceSummary, summarize
from engine.routing import Account
from engine.trading import Trade

CENT = Decimal("0.01")


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


DEFAULT_PERIODS = {Period.DAY: 7, Period.WEEK: 8, Period.MONTH: 6}
MAX_PERIODS = 60


@dataclass(frozen=True)
class ProfitReport:
    """Closed and open P&L with the closed trades' statistics and the realised equity's worst drawdown."""

    closed: PerformanceSummary
    open_pnl: Decimal | None  # None when a mark or a conversion was missing for some open position
    open_positions: int
    unpriced: tuple[str, ...]
    max_drawdown: Decimal | None  # fraction of the running peak of realised equity
    max_drawdown_money: Decimal
    first_trade: datetime | None
    currency: str


@dataclass(frozen=True)
class PeriodRow:
    label: str
    start: date
    trades: int
    pnl: Decimal
    wins: int


@dataclass(frozen=True)
class PerformanceRow:
    name: str  # "strategy symbol", or a strategy
    trades: int
    win_rate: Decimal | None
    expectancy_r: Decimal | None
    net: Decimal
    validation: str


@dataclass(frozen=True)
class BalanceRow:
    account: str
    currency: str
    start: Decimal
    equity: Decimal
    open_positions: int
    exposure: Decimal | None  # open notional in the account's money; None when it could not be converted
    leverage: Decimal | None


def period_start(day: date, period: Period) -> date:
    """The first day of the period holding `day`."""
    if period is Period.DAY:
        return day
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_label(start: date, period: Period) -> str:
    if period is Period.DAY:
        return f"{start:%a %d %b}"
    if period is Period.WEEK:
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{start:%b %Y}"


def by_period(
    trades: Iterable[Trade], money: Callable[[Trade], Decimal], period: Period, count: int, today: date
) -> list[PeriodRow]:
    """The last `count` periods up to the one holding `today`, newest first, empty periods included."""
    if not 1 <= count <= MAX_PERIODS:
        raise ValueError(f"the number of periods must be within 1..{MAX_PERIODS}, was {count}")
    starts = [period_start(today, period)]
    while len(starts) < count:
        starts.append(period_start(starts[-1] - timedelta(days=1), period))
    count_of = dict.fromkeys(starts, 0)
    pnl_of = dict.fromkeys(starts, Decimal(0))
    wins_of = dict.fromkeys(starts, 0)
    for trade in trades:
        if trade.exit_time is None:
            continue
        start = period_start(trade.exit_time.date(), period)
        if start in count_of:
            count_of[start] += 1
            pnl_of[start] += money(trade)
            wins_of[start] += int(trade.pnl_r is not None and trade.pnl_r >= BREAKEVEN_BAND)
    return [PeriodRow(period_label(s, period), s, count_of[s], pnl_of[s].quantize(CENT), wins_of[s]) for s in starts]


def drawdown(
    trades: Sequence[Trade], money: Callable[[Trade], Decimal], start: Decimal
) -> tuple[Decimal | None, Decimal]:
    """Worst fall of realised equity from its running peak after each closed trade: (fraction, money)."""
    equity = peak = start
    worst, worst_money = Decimal(0), Decimal(0)
    for trade in sorted((t for t in trades if t.exit_time is not None), key=lambda t: (t.exit_time, t.trade_id)):
        equity += money(trade)
        peak = max(peak, equity)
        if peak > 0 and (fall := (peak - equity) / peak) > worst:
            worst, worst_money = fall, peak - equity
    return (worst.quantize(Decimal("0.0001")) if trades else None), worst_money.quantize(CENT)


def profit(
    closed: Sequence[Trade],
    money: Callable[[Trade], Decimal],
    open_pnl: Mapping[str, Decimal | None],
    start_equity: Decimal,
    currency: str,
) -> ProfitReport:
    """The `/profit` figures: closed statistics, open P&L (exact when every position was priced), drawdown."""
    unpriced = tuple(sorted(t for t, v in open_pnl.items() if v is None))
    total = None if unpriced else sum((v for v in open_pnl.values() if v is not None), Decimal(0)).quantize(CENT)
    worst, worst_money = drawdown(closed, money, start_equity)
    first = min((t.entry_time for t in closed), default=None)
    return ProfitReport(summarize(closed, money), total, len(open_pnl), unpriced, worst, worst_money, first, currency)


def performance_rows(
    closed: Sequence[Trade], money: Callable[[Trade], Decimal], systems: SystemBook, now: datetime
) -> tuple[list[PerformanceRow], list[PerformanceRow]]:
    """Per pair (strategy × symbol, with its validation status) and per strategy, best net first."""
    pairs: dict[tuple[str, str], list[Trade]] = {}
    for trade in closed:
        pairs.setdefault((trade.strategy, trade.symbol), []).append(trade)
    pair_rows = []
    for (strategy, symbol), trades in pairs.items():
        s = summarize(trades, money)
        status = systems.validation(strategy, symbol, now).status.value
        pair_rows.append(
            PerformanceRow(f"{strategy} {symbol}", s.trades, s.win_rate, s.expectancy_r, s.net_pnl, status)
        )
    strategies: dict[str, list[Trade]] = {}
    for trade in closed:
        strategies.setdefault(trade.strategy, []).append(trade)
    strategy_rows = []
    for name, trades in strategies.items():
        s = summarize(trades, money)
        strategy_rows.append(PerformanceRow(name, s.trades, s.win_rate, s.expectancy_r, s.net_pnl, ""))
    order: Callable[[PerformanceRow], tuple[Decimal, str]] = lambda r: (-r.net, r.name)  # noqa: E731
    return sorted(pair_rows, key=order), sorted(strategy_rows, key=order)


def balance_row(
    account: Account | None,
    name: str,
    start: Decimal,
    currency: str,
    closed_pnl: Decimal,
    open_trades: int,
    exposure: Decimal | None,
) -> BalanceRow:
    """One account's equity (start plus closed P&L), open positions and their notional against that equity."""
    del account
    equity = (start + closed_pnl).quantize(CENT)
    leverage = None if exposure is None or equity <= 0 else (exposure / equity).quantize(CENT)
    return BalanceRow(name, currency, start, equity, open_trades, exposure, leverage)
