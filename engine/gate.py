"""The pre-deploy gate on the system that trades: its exact parameters, measured out of sample, then criteria.

The gate never chooses parameters: it measures the ones given (the configured or adopted set, which the bot
trades), so what it validates is what trades. Choosing parameters is `engine.walkforward`'s job in
`tradebot optimise`, whose proposal the trader adopts explicitly with the end of the data it was tuned on.

History is cut as the walk-forward cuts it (`WalkForwardConfig.windows`): the first `warmup_bars` are indicator
history, the next `train_fraction` of the rest is in-sample and everything after is out of sample. Parameters
tuned on data up to `tuned_until` move the out-of-sample start to the first bar opening at or after it, so no
trade the parameters were fitted on counts as out of sample.

* In sample: one backtest of the bars before the out-of-sample start (signals from the warm-up on; a trade
  still open at the cut is left out). It is only compared with: the out-of-sample win rate must hold up.
* Out of sample: one continuous backtest over all of history taking signals from the out-of-sample start, as
  the bot would have traded it (one position at a time across what the walk-forward calls folds); trades still
  open at the end are left out. The folds' windows only split its trades for the stability table (`periods`).
* Sharpe is annualised from the out-of-sample trades: mean R / sd of R x sqrt(trades per year over the
  out-of-sample span). Max drawdown is that of the out-of-sample equity compounding `risk_fraction` per R.
  Monte Carlo resamples the out-of-sample R.
* The quality score's edge (`ScoreEdge`) is the rank correlation of the out-of-sample trades' scores with their
  R: for the hand weights nothing was fitted, so every out-of-sample trade is held out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from engine.backtest import BacktestConfig, backtest
from engine.bars import from_nanos, to_nanos
from engine.indicators import MarketContext
from engine.montecarlo import MonteCarloReport, equity_curve, max_drawdown, monte_carlo
from engine.performance import TradeStats
from engine.pipeline import EngineConfig
from engine.results import BacktestTrade, Held, measured
from engine.sizing import CANNOT_SIZE
from engine.strategy import Strategy
from engine.systems import ScoreEdge
from engine.walkforward import WalkForwardConfig

SECONDS_PER_YEAR = 365.25 * 86_400


@dataclass(frozen=True)
class GateCriteria:
    """What out-of-sample results must show before a system may trade."""

    min_oos_trades: int = 30
    min_profit_factor: float = 1.2
    min_expectancy_r: float = 0.0  # strictly above
    min_sharpe: float = 0.5
    max_drawdown: float = 0.25
    min_win_rate_ratio: float = 0.85  # out-of-sample win rate / in-sample win rate

    def failures(
        self, oos: TradeStats, sharpe: float | None, drawdown: float, win_rate_ratio: float | None
    ) -> list[str]:
        """Every criterion the out-of-sample results miss, in plain words (empty: they pass)."""
        reasons = []
        if oos.trades < self.min_oos_trades:
            reasons.append(f"{oos.trades} out-of-sample trades < {self.min_oos_trades}")
        pf = oos.profit_factor
        if pf is not None and pf < self.min_profit_factor:
            reasons.append(
                f"out-of-sample profit factor {_apart(pf, self.min_profit_factor)} < {self.min_profit_factor:g}"
            )
        if oos.expectancy_r is None or oos.expectancy_r <= self.min_expectancy_r:
            shown = "n/a" if oos.expectancy_r is None else f"{oos.expectancy_r:+.2f}R"
            reasons.append(f"out-of-sample expectancy {shown} is not above {self.min_expectancy_r:g}R")
        if sharpe is None or sharpe < self.min_sharpe:
            reasons.append(
                f"Sharpe {'n/a' if sharpe is None else _apart(sharpe, self.min_sharpe)} < {self.min_sharpe:g}"
            )
        if drawdown > self.max_drawdown:
            reasons.append(
                f"max drawdown {_apart(drawdown, self.max_drawdown, percent=True)} > {self.max_drawdown:.0%}"
            )
        if win_rate_ratio is None or win_rate_ratio < self.min_win_rate_ratio:
            shown = "n/a" if win_rate_ratio is None else _apart(win_rate_ratio, self.min_win_rate_ratio, percent=True)
            reasons.append(f"out-of-sample win rate is {shown} of in-sample (< {self.min_win_rate_ratio:.0%})")
        return reasons


def _apart(value: float, limit: float, *, percent: bool = False) -> str:
    """Format a figure that missed a limit with as many decimals as it takes to differ from it (84.6 %, not 85 %)."""
    for digits in range(2 if not percent else 0, 6):
        shown, bound = (
            (f"{value:.{digits}%}", f"{limit:.{digits}%}")
            if percent
            else (f"{value:.{digits}f}", f"{limit:.{digits}f}")
        )
        if shown != bound:
            return shown
    return f"{value:.6%}" if percent else f"{value:.6f}"


@dataclass(frozen=True, slots=True)
class Period:
    """The out-of-sample trades entered in one of the walk-forward's test windows."""

    start: datetime
    end: datetime  # exclusive: the next window's first bar (or the end of the data)
    stats: TradeStats


@dataclass(frozen=True)
class GateReport:
    """The measurement of one system and the gate's verdict on it."""

    data_from: datetime  # open of the first bar
    data_to: datetime  # close of the last bar
    oos_from: datetime  # open of the first out-of-sample bar
    in_sample: TradeStats
    oos: TradeStats
    oos_trades: Sequence[BacktestTrade]
    oos_equity: tuple[float, ...]  # 1.0, then the compounded equity after each out-of-sample trade
    periods: tuple[Period, ...]
    monte_carlo: MonteCarloReport
    sharpe: float | None
    score: ScoreEdge
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def oos_r(self) -> tuple[float, ...]:
        return tuple(float(t.r or 0) for t in measured(self.oos_trades))

    @property
    def max_drawdown(self) -> float:
        return max_drawdown(self.oos_equity)

    @property
    def win_rate_ratio(self) -> float | None:
        oos, ins = self.oos.win_rate, self.in_sample.win_rate
        return None if oos is None or ins is None or ins <= 0 else oos / ins

    def metrics(self) -> dict[str, float | int | None]:
        """The figures stored with the baseline."""
        oos, ins, mc = self.oos, self.in_sample, self.monte_carlo
        return {
            "oos_trades": oos.trades,
            "oos_win_rate": oos.win_rate,
            "oos_profit_factor": oos.profit_factor,
            "oos_expectancy_r": oos.expectancy_r,
            "oos_sharpe_per_trade": oos.sharpe,
            "sharpe": self.sharpe,
            "oos_max_drawdown": self.max_drawdown,
            "oos_return": self.oos_equity[-1] - 1.0,
            "is_trades": ins.trades,
            "is_win_rate": ins.win_rate,
            "is_expectancy_r": ins.expectancy_r,
            "win_rate_ratio": self.win_rate_ratio,
            "periods": len(self.periods),
            "mc_max_drawdown_p95": None if mc.max_drawdown is None else mc.max_drawdown.p95,
            "mc_final_return_p5": None if mc.final_return is None else mc.final_return.p5,
            "mc_ruin_probability": mc.ruin_probability,
        }


def oos_start(n_bars: int, wf: WalkForwardConfig, times: np.ndarray, tuned_until: datetime | None) -> int:
    """The first out-of-sample bar: after the in-sample share of history, and not before the tuning data ended."""
    start = wf.windows(n_bars)[0].test.start
    if tuned_until is not None:
        start = max(start, int(np.searchsorted(times, to_nanos(tuned_until), side="left")))
    return start


def run_gate(
    ctx: MarketContext,
    strategy: Strategy[Any],
    engine: EngineConfig,
    config: BacktestConfig,
    wf: WalkForwardConfig,
    criteria: GateCriteria,
    *,
    tuned_until: datetime | None = None,
    mc_runs: int = 1000,
    ruin_drawdown: float = 0.3,
) -> GateReport:
    """Measure `strategy` with its own parameters in and out of sample on `ctx`, and judge it."""
    bars = ctx.bars
    n = len(bars)
    start = oos_start(n, wf, bars.time, tuned_until)
    if start >= n:
        raise ValueError(
            f"{ctx.instrument.symbol}: no out-of-sample bars: the parameters were tuned on data until "
            f"{tuned_until:%Y-%m-%d}, and the data ends {from_nanos(int(bars.close_time[-1])):%Y-%m-%d}"
        )
    in_ctx = MarketContext(ctx.instrument, bars.head(start), ctx.calendar)
    in_sample = backtest(in_ctx, strategy, engine, config, start=min(wf.warmup_bars, start))
    out = backtest(ctx, strategy, engine, config, start=start)
    oos_r = [float(t.r or 0) for t in out.trades.records]
    oos = TradeStats.of(oos_r)
    equity = tuple(float(e) for e in equity_curve(oos_r, float(config.risk_fraction)))
    mc = monte_carlo(oos_r, runs=mc_runs, risk_fraction=float(config.risk_fraction), ruin_drawdown=ruin_drawdown)
    oos_from = bars.bar_time(start)
    data_to = from_nanos(int(bars.close_time[-1]))
    sharpe = annualised_sharpe(oos, oos_from, data_to)
    scored = [t for t in out.trades.records if t.quality is not None]
    score = ScoreEdge.measure([t.quality or 0.0 for t in scored], [float(t.r or 0) for t in scored])
    report = GateReport(
        data_from=bars.bar_time(0),
        data_to=data_to,
        oos_from=oos_from,
        in_sample=TradeStats.of([float(t.r or 0) for t in in_sample.trades.records]),
        oos=oos,
        oos_trades=out.trades,
        oos_equity=equity,
        periods=_periods(ctx, wf, start, out.trades.records),
        monte_carlo=mc,
        sharpe=sharpe,
        score=score,
        failures=(),
    )
    # A system that could not be sized was not measured: say why first, before the bare trade count.
    unsized = [f"{n} out-of-sample setups not traded: {why}" for why, n in out.skips if why.startswith(CANNOT_SIZE)]
    failures = unsized + criteria.failures(oos, sharpe, report.max_drawdown, report.win_rate_ratio)
    return replace(report, failures=tuple(failures))


def annualised_sharpe(oos: TradeStats, start: datetime, end: datetime) -> float | None:
    """Per-trade Sharpe of the out-of-sample R scaled by sqrt(trades per year over the out-of-sample span)."""
    years = (end - start).total_seconds() / SECONDS_PER_YEAR
    if oos.sharpe is None or years <= 0 or oos.trades < 2:
        return None
    return oos.sharpe * math.sqrt(oos.trades / years)


def _periods(ctx: MarketContext, wf: WalkForwardConfig, start: int, trades: Sequence[Held]) -> tuple[Period, ...]:
    """The out-of-sample span cut into `wf.folds` equal windows, each with the trades entered in it."""
    n = len(ctx.bars)
    size = max((n - start) // wf.folds, 1)
    edges = [*list(range(start, n, size))[: wf.folds], n]
    periods = []
    for lo, hi in itertools.pairwise(edges):
        rs = [float(t.r or 0) for t in trades if lo <= t.entry_index < hi]
        end = ctx.bars.bar_time(hi) if hi < n else from_nanos(int(ctx.bars.close_time[-1]))
        periods.append(Period(ctx.bars.bar_time(lo), end, TradeStats.of(rs)))
    return tuple(periods)
