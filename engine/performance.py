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

`TradeStats` is the one place these rules are computed. It measures exact Decimal R multiples (the reports:
`/report`, `/profit`, the backtest's metrics) and float R multiples (the walk-forward, the gate and drift,
which measure thousands of candidate runs) with the same code; only the sums differ (Decimal is exact,
floats use `math.fsum`). It also gives the per-trade Sharpe of R: mean / sample standard deviation, None
with fewer than two trades or no dispersion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Final, Generic, NamedTuple, TypeVar

from engine.trading import Trade

BREAKEVEN_BAND: Final = Decimal("0.05")
R_PLACES: Final = Decimal("0.01")
RATE_PLACES: Final = Decimal("0.0001")
WIN_R: Final = float(BREAKEVEN_BAND)  # the band for float R multiples
FLAT_SPREAD: Final = 1e-12  # a sample std at most this x max(1, |mean|) is rounding noise: no dispersion

N = TypeVar("N", float, Decimal)


@dataclass(frozen=True, slots=True)
class TradeStats(Generic[N]):
    """Counts and R statistics of a sequence of closed trades' net R multiples (rules in the module docstring)."""

    trades: int
    wins: int
    losses: int
    win_rate: N | None
    profit_factor: N | None
    expectancy_r: N | None
    average_win_r: N | None
    average_loss_r: N | None
    sharpe: N | None
    total_r: N

    def __post_init__(self) -> None:
        if not 0 <= self.wins + self.losses <= self.trades:
            raise ValueError(f"wins + losses must be within 0..trades, were {self.wins} + {self.losses}")

    @property
    def breakevens(self) -> int:
        return self.trades - self.wins - self.losses

    @classmethod
    def of(cls, r_multiples: Sequence[N]) -> TradeStats[N]:
        """Measure R multiples: all Decimal (exact) or all float."""
        rs = list(r_multiples)
        exact = bool(rs) and isinstance(rs[0], Decimal)
        if any(isinstance(r, Decimal) != exact for r in rs):
            raise ValueError("R multiples must be all Decimal or all float, not a mix")
        total: Callable[[Sequence[N]], N] = _exact_sum if exact else math.fsum  # type: ignore[assignment]
        band = BREAKEVEN_BAND if exact else WIN_R
        wins = [r for r in rs if r >= band]
        losses = [r for r in rs if r <= -band]
        n = len(rs)
        count: Callable[[int], N] = Decimal if exact else float  # type: ignore[assignment]
        lost = -total([r for r in rs if r < 0])
        mean = total(rs) / n if n else None
        sharpe = None
        if n >= 2 and mean is not None:
            variance = total([(r - mean) ** 2 for r in rs]) / (n - 1)
            sd = variance.sqrt() if isinstance(variance, Decimal) else math.sqrt(variance)
            sharpe = mean / sd if sd > FLAT_SPREAD * max(1.0, abs(float(mean))) else None
        return cls(
            trades=n,
            wins=len(wins),
            losses=len(losses),
            win_rate=count(len(wins)) / count(n) if n else None,
            profit_factor=total([r for r in rs if r > 0]) / lost if lost > 0 else None,
            expectancy_r=mean,
            average_win_r=total(wins) / len(wins) if wins else None,
            average_loss_r=total(losses) / len(losses) if losses else None,
            sharpe=sharpe,
            total_r=total(rs),
        )


class ShownRatios(NamedTuple):
    """The ratios of exact `TradeStats` as every report shows them: the win rate to 0.0001, the R figures to 0.01R."""

    win_rate: Decimal | None
    profit_factor: Decimal | None
    expectancy_r: Decimal | None
    average_win_r: Decimal | None
    average_loss_r: Decimal | None

    @classmethod
    def of(cls, stats: TradeStats[Decimal]) -> ShownRatios:
        return cls(
            _places(stats.win_rate, RATE_PLACES),
            _places(stats.profit_factor, R_PLACES),
            _places(stats.expectancy_r, R_PLACES),
            _places(stats.average_win_r, R_PLACES),
            _places(stats.average_loss_r, R_PLACES),
        )


def _exact_sum(values: Sequence[Decimal]) -> Decimal:
    return sum(values, Decimal(0))


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
    if len(groups) == 1:  # one strategy: its summary is the whole one
        (name,) = groups
        alone = _summary(ordered, money)
        return replace(alone, by_strategy={name: alone})
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
    stats = TradeStats.of([r for _, r in rows])
    shown = ShownRatios.of(stats)
    net: dict[str, Decimal] = {}
    for trade, _ in rows:
        net[trade.symbol] = net.get(trade.symbol, Decimal(0)) + money(trade)
    best = max(rows, key=lambda row: row[1], default=None)  # max/min keep the first of equals: earlier exit
    worst = min(rows, key=lambda row: row[1], default=None)
    return PerformanceSummary(
        trades=stats.trades,
        wins=stats.wins,
        losses=stats.losses,
        breakevens=stats.breakevens,
        win_rate=shown.win_rate,
        profit_factor=shown.profit_factor,
        expectancy_r=shown.expectancy_r,
        average_win_r=shown.average_win_r,
        average_loss_r=shown.average_loss_r,
        total_r=Decimal(stats.total_r),  # 0.0 when empty: nothing tells an empty list's type
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


def _places(value: Decimal | None, places: Decimal) -> Decimal | None:
    return None if value is None else value.quantize(places)
