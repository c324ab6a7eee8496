"""The pre-deploy gate for the systems the bot trades: one job per system, its data, its baseline.

`tradebot validate`, the bot's background validation and `tradebot optimise --adopt` all build `GateJob`s for
traded systems (`bot.services.systems`) and run `run_job`: load the instrument's bars from the data source up to `end`
(the bot clock's now, so a replay never validates on its own future), measure the system with
`engine.gate.run_gate`, and make the `Baseline` the store keeps, carrying the system's fingerprint. A job is
small and picklable; it loads its bars in whichever process runs it.

The walk-forward optimisation of `tradebot optimise` keeps its own task machinery (`WorkerSpec`,
`evaluate_task`): it chooses parameters on training windows, which the gate never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.services.configure import backtest_config, cache_dir
from bot.services.rates import needed_pairs, rate_history
from bot.services.systems import TradedSystem
from data.market.providers import provider_from_source
from data.market.validation import validate_bars
from engine.backtest import BacktestConfig, backtest
from engine.bars import Bars
from engine.calendars import SessionCalendar
from engine.domain import Instrument
from engine.gate import GateCriteria, GateReport, run_gate
from engine.indicators import MarketContext
from engine.pipeline import EngineConfig
from engine.sizing import RateHistory
from engine.strategy import Strategy, build_strategy
from engine.systems import Baseline, SystemSpec
from engine.walkforward import EvalResult, EvalTask, Objective, Search, WalkForwardConfig, WindowScheme

_FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
_NEVER_STALE = 10**9


@dataclass(frozen=True)
class GateJob:
    """Everything needed to validate one traded system, small enough to send to a worker process."""

    spec: SystemSpec
    strategy: Strategy[Any]
    instrument: Instrument
    calendar: SessionCalendar
    engine: EngineConfig
    config: BacktestConfig
    wf: WalkForwardConfig
    criteria: GateCriteria
    data_source: str
    cache_dir: str
    history_bars: int
    end: datetime
    mc_runs: int = 1000
    ruin_drawdown: float = 0.3

    @property
    def label(self) -> str:
        return f"{self.spec.strategy} {self.spec.symbol}"


@dataclass(frozen=True)
class GateOutcome:
    """A job's report and the baseline to store."""

    job: GateJob
    report: GateReport
    baseline: Baseline


def job_bars(job: GateJob) -> Bars:
    """The clean bars of the job's instrument from its data source, closed by `job.end`."""
    return _bars(job.data_source, job.cache_dir, job.instrument, job.calendar, job.end, job.history_bars)


@lru_cache(maxsize=32)
def _bars(
    source: str, cache: str, instrument: Instrument, calendar: SessionCalendar, end: datetime, history: int
) -> Bars:
    """Bars are loaded once per process and instrument: the pairs of one symbol share them."""
    provider = provider_from_source(source, Path(cache))
    frame = provider.fetch(instrument, end, history)
    check = validate_bars(frame, instrument, calendar, end, min_bars=1, stale_bars=_NEVER_STALE)
    if check.bars is None:
        raise ValueError(f"{instrument.symbol}: {check.rejection}")
    return check.bars


def run_job(job: GateJob, created_at: datetime | None = None) -> GateOutcome:
    """Validate one system: its data, the gate's measurement and verdict, the baseline to store."""
    bars = job_bars(job)
    ctx = MarketContext(job.instrument, bars, job.calendar)
    report = run_gate(
        ctx,
        job.strategy,
        job.engine,
        job.config,
        job.wf,
        job.criteria,
        tuned_until=job.spec.tuned_until,
        mc_runs=job.mc_runs,
        ruin_drawdown=job.ruin_drawdown,
    )
    return GateOutcome(job, report, baseline_of(job, report, created_at or datetime.now(UTC)))


def baseline_of(job: GateJob, report: GateReport, created_at: datetime) -> Baseline:
    """The stored record of a validation: the system's fingerprint, its verdict and out-of-sample R sample."""
    spec = job.spec
    return Baseline(
        strategy=spec.strategy,
        symbol=spec.symbol,
        interval=spec.interval.value,
        params=dict(spec.params),
        data_source=job.data_source,
        data_from=report.data_from,
        data_to=report.data_to,
        passed=report.passed,
        reasons=report.failures,
        metrics=report.metrics(),
        r_multiples=report.oos_r,
        created_at=created_at,
        fingerprint=spec.fingerprint,
        system=spec.to_json(),
        oos_from=report.oos_from,
        score=report.score,
    )


def walk_forward_config(settings: Settings, warmup: int) -> WalkForwardConfig:
    """How `[backtest]` cuts history into in-sample and out-of-sample windows (and searches, for optimise)."""
    t = settings.backtest
    return WalkForwardConfig(
        folds=t.folds,
        scheme=WindowScheme(t.scheme),
        train_fraction=t.train_fraction,
        warmup_bars=warmup,
        search=Search(t.search),
        candidates=t.candidates,
        seed=t.seed,
        objective=Objective(t.objective),
        min_train_trades=t.min_train_trades,
        risk_fraction=float(settings.bot.risk_per_trade),
    )


def backtest_rates(
    settings: Settings, data_source: str, instruments: Sequence[Instrument], end: datetime
) -> RateHistory:
    """The conversion prices backtests of `instruments` need into the account currency, over their history."""
    quotes = {w.symbol: w.quote_currency for w in settings.watchlist}
    pairs = needed_pairs(instruments, settings.bot.account_currency, quotes).values()
    provider = provider_from_source(data_source, cache_dir(settings)) if pairs else None
    return rate_history(provider, pairs, settings.bot.fx_rates, end, settings.backtest.history_bars)


def gate_jobs(settings: Settings, systems: Sequence[TradedSystem], *, data_source: str, end: datetime) -> list[GateJob]:
    """One job per traded system, validating it on `data_source` up to `end` under the configured gate."""
    engine = settings.engine_config()
    rates = backtest_rates(settings, data_source, [t.instrument for t in systems], end)
    config = backtest_config(settings, rates)
    criteria = GateCriteria(**settings.backtest.gate.model_dump())
    cache = str(cache_dir(settings))
    b = settings.backtest
    return [
        GateJob(
            spec=t.spec,
            strategy=t.strategy,
            instrument=t.instrument,
            calendar=t.calendar,
            engine=engine,
            config=config,
            wf=walk_forward_config(settings, t.strategy.warmup),
            criteria=criteria,
            data_source=data_source,
            cache_dir=cache,
            history_bars=b.history_bars,
            end=end,
            mc_runs=b.monte_carlo_runs,
            ruin_drawdown=b.ruin_drawdown,
        )
        for t in systems
    ]


# --- walk-forward optimisation (`tradebot optimise`) --------------------------------------------------------------


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
    from data.market.csv_provider import CsvProvider  # noqa: PLC0415 - pandas: only where bars are read

    frame = CsvProvider(Path(data_dir)).fetch(instrument, _FAR_FUTURE, 10**9)
    check = validate_bars(frame, instrument, calendar, _FAR_FUTURE, min_bars=1, stale_bars=_NEVER_STALE)
    if check.bars is None:
        raise ValueError(f"{instrument.symbol}: {check.rejection}")
    return check.bars


@lru_cache(maxsize=4)
def window_context(data_dir: str, instrument: Instrument, calendar: SessionCalendar, end: int) -> MarketContext:
    """The context of the bars before `end` (cached per worker process: a window's parameter sets share its
    indicators, as a scan's strategies share a symbol's)."""
    return MarketContext(instrument, load_bars(data_dir, instrument, calendar).head(end), calendar)


def evaluate_task(spec: WorkerSpec, task: EvalTask) -> EvalResult:
    """Backtest one parameter set on one window; bars at or after `task.end` do not exist for it."""
    ctx = window_context(spec.data_dir, spec.instrument, spec.calendar, task.end)
    strategy = build_strategy(spec.strategy, task.params)
    result = backtest(ctx, strategy, spec.engine, spec.config, start=task.start, end=task.end)
    r = [float(t.r or 0) for t in result.trades.records]
    pnl = [float(t.pnl or 0) for t in result.trades.records]
    return EvalResult.from_r_multiples(r, pnl)
