"""The pre-deploy gate: walk-forward and Monte Carlo for every enabled strategy x instrument, then criteria.

For each pair the history is cut into folds; parameters are chosen on each training window only (by the
declared search ranges of the strategy) and measured on the following test window; the stitched
out-of-sample trades are resampled by Monte Carlo. A pair passes when its *out-of-sample* numbers meet
every criterion. Every result is stored as a versioned baseline (metrics, the out-of-sample R sample, the
data range and the parameters chosen on the last fold); the live bot does not offer signals of a pair
whose latest result failed.

Sharpe here is annualised from the out-of-sample trades: mean R / standard deviation of R x
sqrt(trades per year over the out-of-sample span). Max drawdown is that of the stitched out-of-sample
equity compounding `risk_per_trade` per R.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from data.csv_provider import CsvProvider
from data.validation import validate_bars
from engine.backtest import BacktestConfig, backtest
from engine.bars import Bars, from_nanos
from engine.calendars import SessionCalendar
from engine.domain import Instrument
from engine.indicators import MarketContext
from engine.montecarlo import MonteCarloReport, monte_carlo
from engine.pipeline import EngineConfig
from engine.ports import Baseline
from engine.strategy import build_strategy
from engine.walkforward import EvalResult, EvalTask, WalkForwardConfig, WalkForwardReport, walk_forward

_FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
_NEVER_STALE = 10**9
_SECONDS_PER_YEAR = 365.25 * 86_400


@dataclass(frozen=True)
class GateCriteria:
    """What out-of-sample results must show before a strategy may trade an instrument."""

    min_oos_trades: int = 30
    min_profit_factor: float = 1.2
    min_expectancy_r: float = 0.0  # strictly above
    min_sharpe: float = 0.5
    max_drawdown: float = 0.25
    min_win_rate_ratio: float = 0.85  # out-of-sample win rate / in-sample win rate

    def failures(self, report: WalkForwardReport, sharpe: float | None) -> list[str]:
        """Every criterion the report misses, in plain words (empty: it passes)."""
        oos = report.oos
        reasons = []
        if oos.trades < self.min_oos_trades:
            reasons.append(f"{oos.trades} out-of-sample trades < {self.min_oos_trades}")
        pf = oos.profit_factor
        if pf is not None and pf < self.min_profit_factor:
            reasons.append(f"out-of-sample profit factor {pf:.2f} < {self.min_profit_factor:g}")
        if oos.expectancy_r is None or oos.expectancy_r <= self.min_expectancy_r:
            shown = "n/a" if oos.expectancy_r is None else f"{oos.expectancy_r:+.2f}R"
            reasons.append(f"out-of-sample expectancy {shown} is not above {self.min_expectancy_r:g}R")
        if sharpe is None or sharpe < self.min_sharpe:
            reasons.append(f"Sharpe {'n/a' if sharpe is None else f'{sharpe:.2f}'} < {self.min_sharpe:g}")
        if report.oos_max_drawdown > self.max_drawdown:
            reasons.append(f"max drawdown {report.oos_max_drawdown:.0%} > {self.max_drawdown:.0%}")
        ratio = report.win_rate_ratio
        if ratio is None or ratio < self.min_win_rate_ratio:
            shown = "n/a" if ratio is None else f"{ratio:.0%}"
            reasons.append(f"out-of-sample win rate is {shown} of in-sample (< {self.min_win_rate_ratio:.0%})")
        return reasons


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to backtest one strategy x instrument (small: bars are loaded there)."""

    data_dir: str
    instrument: Instrument
    calendar: SessionCalendar
    strategy: str
    engine: EngineConfig
    config: BacktestConfig


@lru_cache(maxsize=16)
def load_bars(data_dir: str, instrument: Instrument, calendar: SessionCalendar) -> Bars:
    """All clean bars of an instrument's CSV file (cached per worker process)."""
    frame = CsvProvider(Path(data_dir)).fetch(instrument, _FAR_FUTURE, 10**9)
    check = validate_bars(frame, instrument, calendar, _FAR_FUTURE, min_bars=1, stale_bars=_NEVER_STALE)
    if check.bars is None:
        raise ValueError(f"{instrument.symbol}: {check.rejection}")
    return check.bars


def evaluate_task(spec: WorkerSpec, task: EvalTask) -> EvalResult:
    """Backtest one parameter set on one window; bars at or after `task.end` do not exist for it."""
    bars = load_bars(spec.data_dir, spec.instrument, spec.calendar).head(task.end)
    ctx = MarketContext(spec.instrument, bars, spec.calendar)
    strategy = build_strategy(spec.strategy, task.params)
    result = backtest(ctx, strategy, spec.engine, spec.config, start=task.start, end=task.end)
    r = [float(t.trade.pnl_r or 0) for t in result.trades]
    pnl = [float(t.trade.pnl or 0) for t in result.trades]
    return EvalResult.from_r_multiples(r, pnl)


@dataclass(frozen=True)
class GateResult:
    """The verdict on one strategy x instrument with the numbers behind it."""

    strategy: str
    symbol: str
    interval: str
    report: WalkForwardReport
    monte_carlo: MonteCarloReport
    sharpe: float | None
    reasons: tuple[str, ...]
    data_from: datetime
    data_to: datetime
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def metrics(self) -> dict[str, float | int | None]:
        oos, ins, mc = self.report.oos, self.report.in_sample, self.monte_carlo
        return {
            "oos_trades": oos.trades,
            "oos_win_rate": oos.win_rate,
            "oos_profit_factor": oos.profit_factor,
            "oos_expectancy_r": oos.expectancy_r,
            "oos_sharpe_per_trade": oos.sharpe,
            "sharpe": self.sharpe,
            "oos_max_drawdown": self.report.oos_max_drawdown,
            "oos_return": self.report.oos_final_return,
            "is_trades": ins.trades,
            "is_win_rate": ins.win_rate,
            "is_expectancy_r": ins.expectancy_r,
            "win_rate_ratio": self.report.win_rate_ratio,
            "folds": len(self.report.folds),
            "folds_skipped": sum(f.skipped for f in self.report.folds),
            "mc_max_drawdown_p95": None if mc.max_drawdown is None else mc.max_drawdown.p95,
            "mc_final_return_p5": None if mc.final_return is None else mc.final_return.p5,
            "mc_ruin_probability": mc.ruin_probability,
        }

    def baseline(self, data_source: str, now: datetime) -> Baseline:
        return Baseline(
            strategy=self.strategy,
            symbol=self.symbol,
            interval=self.interval,
            params=self.params,
            data_source=data_source,
            data_from=self.data_from,
            data_to=self.data_to,
            passed=self.passed,
            reasons=self.reasons,
            metrics=self.metrics(),
            r_multiples=self.report.oos_r,
            created_at=now,
        )


def annualised_sharpe(report: WalkForwardReport, oos_start: datetime, oos_end: datetime) -> float | None:
    """Per-trade Sharpe of the out-of-sample R scaled by sqrt(trades per year over the out-of-sample span)."""
    per_trade = report.oos.sharpe
    years = (oos_end - oos_start).total_seconds() / _SECONDS_PER_YEAR
    if per_trade is None or years <= 0 or report.oos.trades < 2:
        return None
    return per_trade * math.sqrt(report.oos.trades / years)


def validate_pair(
    spec: WorkerSpec,
    wf: WalkForwardConfig,
    parameter_sets: Sequence[dict[str, Any]],
    criteria: GateCriteria,
    executor: Any,
    *,
    mc_runs: int = 1000,
    ruin_drawdown: float = 0.3,
    progress: Callable[[int, int], None] | None = None,
) -> GateResult:
    """Walk-forward, Monte Carlo and the criteria for one strategy x instrument."""
    bars = load_bars(spec.data_dir, spec.instrument, spec.calendar)
    report = walk_forward(len(bars), wf, parameter_sets, partial(evaluate_task, spec), executor, progress=progress)
    mc = monte_carlo(
        report.oos_r, runs=mc_runs, risk_fraction=wf.risk_fraction, ruin_drawdown=ruin_drawdown, seed=wf.seed
    )
    windows = wf.windows(len(bars))
    oos_start = from_nanos(int(bars.time[windows[0].test.start]))
    oos_end = from_nanos(int(bars.close_time[-1]))
    sharpe = annualised_sharpe(report, oos_start, oos_end)
    last = next((f for f in reversed(report.folds) if f.chosen is not None), None)
    return GateResult(
        strategy=spec.strategy,
        symbol=spec.instrument.symbol,
        interval=spec.instrument.interval.value,
        report=report,
        monte_carlo=mc,
        sharpe=sharpe,
        reasons=tuple(criteria.failures(report, sharpe)),
        data_from=from_nanos(int(bars.time[0])),
        data_to=from_nanos(int(bars.close_time[-1])),
        params=dict(last.chosen) if last is not None and last.chosen is not None else {},
    )
