"""Backtest metrics from closed trades and the equity curve, and the calibration of the quality score.

Decisions, so every number means one thing and none is made up:

* Trade statistics are `engine.performance`'s (`TradeStats`, rounded by `ShownRatios`), the ones `/report`
  shows (`summarize`), over the same exact R multiples in any order (exact sums): a win is net R >=
  +0.05R (`BREAKEVEN_BAND`), a loss <= -0.05R, win rate = wins / trades, profit factor = gained R / lost R
  (None when nothing was lost, never infinity), expectancy = mean net R. Money (net P&L, fees, average win /
  loss: the mean net P&L after fees of those same wins / losses) is in the backtest's account currency, each
  trade converted at its own exit (`BacktestTrade.account_pnl`), to 0.01. Only CLOSED trades count; a
  backtest's trades still open at the end are left out here (they are in the equity curve).
* Sharpe and Sortino use DAILY returns of the mark-to-market equity curve: the equity at the last bar of each
  trading date (the calendar's session date) over the previous one, the first over the initial equity;
  days without bars (weekends, holidays) are not days. Annualised by sqrt(trading days per year): 252 on
  exchange calendars (XNSE, XNYS), 260 for FX and metals (five days a week, all year), 365 for crypto. The
  risk-free rate is 0. Sharpe = mean / sample standard deviation (ddof 1); Sortino = mean / downside
  deviation, sqrt(mean(min(r, 0)^2)) over all days. Both are None with fewer than `MIN_RETURN_DAYS` (20)
  daily returns, with no variation (no downside for Sortino), or once equity has reached zero.
* Max drawdown is the largest fall from a running peak of the mark-to-market curve (the initial equity is
  the first peak), as a fraction of that peak; 0.0 when equity never fell, None for an empty curve. It is
  measured at bar closes: a fall and recovery inside one bar is not seen.
* CAGR = (final / initial) ^ (365.25 / days) - 1 over the calendar span from the first bar's open to the
  last bar's close; None when that span is under `MIN_CAGR_DAYS` (90 days: annualising a few weeks turns
  noise into absurd rates); -1.0 when equity ended at or below zero.
* Exposure = fraction of the curve's bars during which a position was open.
* Breakdowns (count, wins, win rate, expectancy R) group closed trades by exchange-local entry hour, entry
  weekday (0 = Monday), symbol, and quality decile. Deciles are fixed score bands, 0 = [0, 10), ...,
  9 = [90, 100], not quantiles of the sample: the same band means the same score in every sample, which the
  calibration needs to carry a mapping from one sample to another. Unscored trades have no decile.
* Calibration (`calibration`) is evaluated OUT OF SAMPLE by time: the scored closed trades sorted by entry
  time are split in half; the first half fits a win probability per decile (its win rate there, or the first
  half's base rate where a decile holds fewer than `MIN_DECILE_FIT` trades), the second half is scored with
  it. The mapping's Brier score is compared with the Brier score of the first half's base rate on the same
  second-half trades; the report says plainly whether the mapping beats it. Fewer than
  `MIN_CALIBRATION_TRADES` scored trades give "n/a", not a number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, TypeVar

import numpy as np

from engine.bars import FloatArray
from engine.performance import BREAKEVEN_BAND, R_PLACES, RATE_PLACES, ShownRatios, TradeStats

if TYPE_CHECKING:
    from engine.results import BacktestTrade, EquityCurve, Measured

MIN_RETURN_DAYS: Final = 20
MIN_CAGR_DAYS: Final = 90
MIN_CALIBRATION_TRADES: Final = 40
MIN_DECILE_FIT: Final = 5
DECILES: Final = 10
CENT: Final = Decimal("0.01")
DAYS_PER_YEAR: Final = 365.25
_DAY_NS: Final = 86_400 * 1_000_000_000

TRADING_DAYS_PER_YEAR: Final[Mapping[str, int]] = MappingProxyType({"XNSE": 252, "XNYS": 252, "FX": 260, "CRYPTO": 365})

K = TypeVar("K", int, str)


def trading_days_per_year(calendar: str) -> int:
    """Return the trading days per year that annualise daily returns on `calendar` (see the module docstring)."""
    try:
        return TRADING_DAYS_PER_YEAR[calendar]
    except KeyError:
        known = ", ".join(sorted(TRADING_DAYS_PER_YEAR))
        raise ValueError(f"no trading-days-per-year figure for calendar {calendar!r}; known: {known}") from None


def quality_decile(score: float) -> int:
    """Return the fixed score band of a 0-100 quality score: 0 for [0, 10) ... 9 for [90, 100]."""
    if not 0.0 <= score <= 100.0:
        raise ValueError(f"quality score must be within 0..100, was {score}")
    return min(int(score // 10), DECILES - 1)


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Count, wins, win rate and expectancy (R) of one group of closed trades."""

    trades: int
    wins: int
    win_rate: Decimal | None
    expectancy_r: Decimal | None

    def __post_init__(self) -> None:
        if not 0 <= self.wins <= self.trades:
            raise ValueError(f"wins must be within 0..trades, were {self.wins} of {self.trades}")


@dataclass(frozen=True)
class BacktestMetrics:
    """Trade statistics, equity-curve ratios and breakdowns of one backtest (None / "n/a" when undefined)."""

    trades: int
    wins: int
    losses: int
    breakevens: int
    win_rate: Decimal | None
    profit_factor: Decimal | None
    expectancy_r: Decimal | None
    average_win_r: Decimal | None
    average_loss_r: Decimal | None
    average_win: Decimal | None
    average_loss: Decimal | None
    net_pnl: Decimal
    fees: Decimal
    initial_equity: float
    final_equity: float | None
    total_return: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None
    cagr: float | None
    exposure: float | None
    trading_days: int
    trading_days_per_year: int
    by_hour: Mapping[int, GroupStats]
    by_weekday: Mapping[int, GroupStats]
    by_symbol: Mapping[str, GroupStats]
    by_quality_decile: Mapping[int, GroupStats]

    def __post_init__(self) -> None:
        if self.wins + self.losses + self.breakevens != self.trades:
            raise ValueError("wins + losses + breakevens must equal trades")
        if self.max_drawdown is not None and self.max_drawdown < 0:
            raise ValueError(f"max drawdown is a fall from a peak and cannot be negative, was {self.max_drawdown}")


def compute_metrics(trades: Sequence[Measured], curve: EquityCurve) -> BacktestMetrics:
    """Compute the metrics of closed `trades` and their mark-to-market equity `curve`."""
    if any(t.exit_index is None for t in trades):
        raise ValueError("metrics count closed trades only: pass the trades still open separately")
    rows = [(t, _r(t)) for t in trades]
    stats = TradeStats.of([r for _, r in rows])
    shown = ShownRatios.of(stats)  # as `/report` shows them
    wins = [t for t, r in rows if r >= BREAKEVEN_BAND]
    losses = [t for t, r in rows if r <= -BREAKEVEN_BAND]
    returns = daily_returns(curve)
    final = float(curve.equity[-1]) if len(curve) else None
    return BacktestMetrics(
        trades=stats.trades,
        wins=stats.wins,
        losses=stats.losses,
        breakevens=stats.breakevens,
        win_rate=shown.win_rate,
        profit_factor=shown.profit_factor,
        expectancy_r=shown.expectancy_r,
        average_win_r=shown.average_win_r,
        average_loss_r=shown.average_loss_r,
        average_win=_mean_money(wins),
        average_loss=_mean_money(losses),
        net_pnl=sum((_money(t) for t in trades), Decimal(0)),
        fees=sum(((t.fees * _decimal(t.entry_rate)).quantize(CENT) for t in trades), Decimal(0)),
        initial_equity=curve.initial,
        final_equity=final,
        total_return=None if final is None else final / curve.initial - 1.0,
        sharpe=sharpe_ratio(returns, curve.trading_days_per_year),
        sortino=sortino_ratio(returns, curve.trading_days_per_year),
        max_drawdown=max_drawdown(curve.equity, curve.initial),
        cagr=cagr(curve),
        exposure=float(np.mean(curve.in_position)) if len(curve) else None,
        trading_days=int(np.count_nonzero(np.diff(curve.day))) + 1 if len(curve) else 0,
        trading_days_per_year=curve.trading_days_per_year,
        by_hour=_breakdown(rows, lambda t: t.entry_hour),
        by_weekday=_breakdown(rows, lambda t: t.entry_weekday),
        by_symbol=_breakdown(rows, lambda t: t.symbol),
        by_quality_decile=_breakdown(
            [(t, r) for t, r in rows if t.quality is not None],
            lambda t: quality_decile(t.quality) if t.quality is not None else -1,
        ),
    )


def daily_returns(curve: EquityCurve) -> FloatArray | None:
    """Return per trading date of the mark-to-market equity; None once equity has reached zero or below."""
    if len(curve) == 0:
        return np.empty(0)
    day = curve.day
    last_of_day = np.flatnonzero(np.r_[day[1:] != day[:-1], True])
    closes = curve.equity[last_of_day]
    previous = np.r_[curve.initial, closes[:-1]]
    if bool(np.any(previous <= 0)):
        return None
    return np.asarray(closes / previous - 1.0, dtype=np.float64)


def sharpe_ratio(returns: FloatArray | None, periods_per_year: int) -> float | None:
    """Return the annualised mean / sample standard deviation of daily returns; None when too few or constant."""
    if returns is None or len(returns) < MIN_RETURN_DAYS:
        return None
    std = float(np.std(returns, ddof=1))
    if not (std > 0 and np.ptp(returns) > 0):  # equal returns: their float deviation (1e-19) is not a risk
        return None
    return float(np.mean(returns)) / std * math.sqrt(periods_per_year)


def sortino_ratio(returns: FloatArray | None, periods_per_year: int) -> float | None:
    """Return the annualised mean / downside deviation (target 0) of daily returns; None if too few or no downside."""
    if returns is None or len(returns) < MIN_RETURN_DAYS:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if not downside > 0:
        return None
    return float(np.mean(returns)) / downside * math.sqrt(periods_per_year)


def max_drawdown(equity: FloatArray, initial: float) -> float | None:
    """Return the largest fall from a running peak (the initial equity is the first), as a fraction of the peak."""
    if len(equity) == 0:
        return None
    path = np.r_[initial, equity]
    peaks = np.maximum.accumulate(path)
    return float(np.max((peaks - path) / peaks))


def cagr(curve: EquityCurve) -> float | None:
    """Return the compound annual growth over the curve's calendar span; None under `MIN_CAGR_DAYS` days."""
    if len(curve) == 0:
        return None
    days = (int(curve.close_time[-1]) - int(curve.time[0])) / _DAY_NS
    if days < MIN_CAGR_DAYS:
        return None
    final = float(curve.equity[-1])
    if final <= 0:
        return -1.0
    return float((final / curve.initial) ** (DAYS_PER_YEAR / days) - 1.0)


@dataclass(frozen=True, slots=True)
class DecileCalibration:
    """Win rate of the scored closed trades whose quality fell in one fixed score band."""

    decile: int
    trades: int
    wins: int
    win_rate: float | None

    @property
    def band(self) -> tuple[int, int]:
        return self.decile * 10, self.decile * 10 + 10


@dataclass(frozen=True)
class CalibrationReport:
    """Win rate per quality decile and whether a decile -> win-probability mapping beats the base rate."""

    scored_trades: int
    deciles: tuple[DecileCalibration, ...]
    fit_trades: int
    test_trades: int
    base_rate: float | None  # win rate of the fit half
    brier_mapping: float | None  # Brier score of the decile mapping on the test half
    brier_base_rate: float | None  # Brier score of the fit half's base rate on the test half
    skill: float | None  # 1 - brier_mapping / brier_base_rate
    beats_base_rate: bool | None
    verdict: str


def calibration(trades: Sequence[BacktestTrade]) -> CalibrationReport:
    """Report decile win rates of the scored closed trades and test the decile mapping out of sample (Brier)."""
    scored = sorted(
        (t for t in trades if t.score is not None and not t.trade.is_open),
        key=lambda t: (t.trade.entry_time, t.trade.trade_id),
    )
    outcomes = [(quality_decile(t.score.total), _r(t) >= BREAKEVEN_BAND) for t in scored if t.score is not None]
    deciles = tuple(_decile_row(d, [won for dd, won in outcomes if dd == d]) for d in range(DECILES))
    n = len(outcomes)
    if n < MIN_CALIBRATION_TRADES:
        verdict = (
            f"n/a: {n} scored closed trades; at least {MIN_CALIBRATION_TRADES} are needed to fit a mapping on "
            "the first half and test it on the second"
        )
        return CalibrationReport(n, deciles, 0, 0, None, None, None, None, None, verdict)
    fit, test = outcomes[: n // 2], outcomes[n // 2 :]
    base = sum(won for _, won in fit) / len(fit)
    mapping = {}
    for d in range(DECILES):
        in_decile = [won for dd, won in fit if dd == d]
        mapping[d] = sum(in_decile) / len(in_decile) if len(in_decile) >= MIN_DECILE_FIT else base
    brier_map = float(np.mean([(mapping[d] - won) ** 2 for d, won in test]))
    brier_base = float(np.mean([(base - won) ** 2 for _, won in test]))
    beats = brier_map < brier_base
    skill = 1.0 - brier_map / brier_base if brier_base > 0 else None
    figures = f"Brier {brier_map:.4f} vs base rate {brier_base:.4f} on the later {len(test)} trades"
    if beats:
        verdict = f"the quality-decile mapping beats the base rate out of sample: {figures}"
    else:
        verdict = (
            f"the quality-decile mapping does NOT beat the base rate out of sample: {figures}; on this sample the "
            "score's deciles add nothing to the plain win rate as a win probability"
        )
    return CalibrationReport(n, deciles, len(fit), len(test), base, brier_map, brier_base, skill, beats, verdict)


def _decile_row(decile: int, won: list[bool]) -> DecileCalibration:
    wins = sum(won)
    return DecileCalibration(decile, len(won), wins, wins / len(won) if won else None)


@lru_cache(maxsize=1024)
def _decimal(rate: float) -> Decimal:
    """The decimal a rate's float means (its shortest repr); a backtest's trades share a few rates."""
    return Decimal(repr(rate))


def _r(trade: Measured) -> Decimal:
    r = trade.r
    if r is None:
        raise ValueError(f"trade {trade.trade_id} has no R multiple (zero money at risk)")
    return r


def _money(trade: Measured) -> Decimal:
    money = trade.money
    if money is None:
        raise ValueError(f"trade {trade.trade_id} is open: metrics count closed trades only")
    return money


def _mean_money(trades: list[Measured]) -> Decimal | None:
    if not trades:
        return None
    total = sum((_money(t) for t in trades), Decimal(0))
    return (total / len(trades)).quantize(CENT, rounding=ROUND_HALF_EVEN)


def _breakdown(rows: Sequence[tuple[Measured, Decimal]], key: Callable[[Measured], K]) -> Mapping[K, GroupStats]:
    groups: dict[K, list[Decimal]] = {}
    for trade, r in rows:
        groups.setdefault(key(trade), []).append(r)
    out: dict[K, GroupStats] = {}
    for k in sorted(groups):
        rs = groups[k]
        wins = sum(1 for r in rs if r >= BREAKEVEN_BAND)
        out[k] = GroupStats(
            trades=len(rs),
            wins=wins,
            win_rate=(Decimal(wins) / len(rs)).quantize(RATE_PLACES),
            expectancy_r=(sum(rs, Decimal(0)) / len(rs)).quantize(R_PLACES),
        )
    return MappingProxyType(out)
