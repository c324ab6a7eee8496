"""Statistics over closed trades, for `/report` and the backtest report.

Decisions, so every number means one thing:

* A trade is a win when its net R (after fees) is at least +0.05R, a loss when at most -0.05R, otherwise a
  breakeven (`BREAKEVEN_BAND`): a scratch trade closed at entry counts as neither.
* Win rate = wins / all trades (breakevens count as not won), a fraction 0..1 to four places.
* Ratios are in R, which is comparable across symbols and currencies: profit factor = sum of positive net R
  / |sum of negative net R| (every trade counts, breakevens included), None when nothing was lost (never
  infinity; shown "n/a"). Expectancy is the mean net R; average win/loss are the mean R of wins/losses.
* Money: with `to_account` (the bot's converter into the account currency) every net P&L is account money
  and `net_pnl` their sum. Without it (a backtest of one symbol) each trade's P&L stays in its instrument's
  quote currency: `net_pnl_by_symbol` keeps symbols apart, and `net_pnl` is money only when they share one.
* Best and worst trade are by net R; ties go to the earlier exit.
* Zero trades give a summary with `is_empty` true, counts of 0 and None for every ratio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final

from engine.trading import Trade

BREAKEVEN_BAND: Final = Decimal("0.05")
R_PLACES: Final = Decimal("0.01")
RATE_PLACES: Final = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class PerformanceSummary:
    """Counts, R statistics and net P&L of a set of closed trades."""

    trades: int
    wins: int
    losses: int
    breakevens: int
    win_rate: Decimal | None
    profit_factor: Decimal | None
    expectancy_r: Decimal | None
    average_win_r: Decimal | None
    average_loss_r: Decimal | None
    total_r: Decimal
    net_pnl: Decimal
    net_pnl_by_symbol: Mapping[str, Decimal]
    best: Trade | None
    worst: Trade | None
    by_strategy: Mapping[str, PerformanceSummary] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.wins + self.losses + self.breakevens != self.trades:
            raise ValueError(
                f"wins + losses + breakevens must equal trades, were {self.wins} + {self.losses} + "
                f"{self.breakevens} vs {self.trades}"
            )

    @property
    def is_empty(self) -> bool:
        return self.trades == 0


def summarize(trades: Iterable[Trade], to_account: Callable[[Trade], Decimal] | None = None) -> PerformanceSummary:
    """Summarise closed trades overall and per strategy (money via `to_account` when given)."""
    ordered = _ordered(trades)
    money = to_account or _pnl
    groups: dict[str, list[tuple[Trade, Decimal]]] = {}
    for trade, r in ordered:
        groups.setdefault(trade.strategy, []).append((trade, r))
    by_strategy = {name: _summary(groups[name], money) for name in sorted(groups)}
    return _summary(ordered, money, by_strategy)


def format_ratio(value: Decimal | None) -> str:
    """Render an optional ratio: its digits, or "n/a" when it is undefined."""
    return "n/a" if value is None else str(value)


def _ordered(trades: Iterable[Trade]) -> list[tuple[Trade, Decimal]]:
    """Closed trades with their net R, by exit time then id; open or unmeasurable trades raise."""
    rows: list[tuple[datetime, str, Trade, Decimal]] = []
    for trade in trades:
        if trade.exit_time is None:
            raise ValueError(f"trade {trade.trade_id} is still open: performance counts closed trades only")
        r = trade.pnl_r
        if r is None:
            raise ValueError(f"trade {trade.trade_id} has no R multiple (zero money at risk)")
        rows.append((trade.exit_time, trade.trade_id, trade, r))
    rows.sort(key=lambda row: (row[0], row[1]))
    return [(trade, r) for _, _, trade, r in rows]


def _summary(
    rows: list[tuple[Trade, Decimal]],
    money: Callable[[Trade], Decimal],
    by_strategy: Mapping[str, PerformanceSummary] | None = None,
) -> PerformanceSummary:
    n = len(rows)
    rs = [r for _, r in rows]
    win_rs = [r for r in rs if r >= BREAKEVEN_BAND]
    loss_rs = [r for r in rs if r <= -BREAKEVEN_BAND]
    gained = sum((r for r in rs if r > 0), Decimal(0))
    lost = -sum((r for r in rs if r < 0), Decimal(0))
    net: dict[str, Decimal] = {}
    for trade, _ in rows:
        net[trade.symbol] = net.get(trade.symbol, Decimal(0)) + money(trade)
    best = max(rows, key=lambda row: row[1], default=None)  # max/min keep the first of equals: earlier exit
    worst = min(rows, key=lambda row: row[1], default=None)
    return PerformanceSummary(
        trades=n,
        wins=len(win_rs),
        losses=len(loss_rs),
        breakevens=n - len(win_rs) - len(loss_rs),
        win_rate=(Decimal(len(win_rs)) / n).quantize(RATE_PLACES) if n else None,
        profit_factor=(gained / lost).quantize(R_PLACES) if lost else None,
        expectancy_r=_mean(rs),
        average_win_r=_mean(win_rs),
        average_loss_r=_mean(loss_rs),
        total_r=sum(rs, Decimal(0)),
        net_pnl=sum(net.values(), Decimal(0)),
        net_pnl_by_symbol={symbol: net[symbol] for symbol in sorted(net)},
        best=best[0] if best else None,
        worst=worst[0] if worst else None,
        by_strategy=dict(by_strategy or {}),
    )


def _pnl(trade: Trade) -> Decimal:
    pnl = trade.pnl
    if pnl is None:
        raise ValueError(f"trade {trade.trade_id} is still open: performance counts closed trades only")
    return pnl


def _mean(values: list[Decimal]) -> Decimal | None:
    if not values:
        return None
    return (sum(values, Decimal(0)) / len(values)).quantize(R_PLACES)
