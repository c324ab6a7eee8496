"""The backtester: a strategy over history, through the live validation and scoring, into costed trades.

Pure (no I/O). `backtest` generates the strategy's signals over the whole history once, validates and scores
the bars that fired with `engine.pipeline.assess` (the per-candidate step of the live scan), and turns the
setups into trades with `simulate`'s trade logic, which the replay (`bot.services.replay`) shares. Rules:

* Candidates come from bars in [start, end) only; earlier bars are warm-up history. A bar whose index is
  below `strategy.warmup - 1` is skipped (counted): a live scan at that bar would see fewer than `warmup`
  bars and refuse ("insufficient history").
* Validation is lazy: with `one_position_per_symbol` a candidate is validated and scored only when no
  position is open at its bar, so `setups` / `rejections` count the candidates that could have been taken;
  the ones that fired while in a position are counted as skipped without being validated.
* What does not depend on the book is decided for every candidate at once (`engine.columns`: the levels on
  the tick, the validation rules on them, the entry bar, gaps through a level, the entry fill), and sizing and
  exit fills run in whole ticks (`engine.sizing.TickSizer`, `TradeBook._closing_fill`), to the same results as
  `validate`, `Sizing.size` and `engine.costs`, which decide whatever the whole-tick arithmetic cannot.
* Entry: at the OPEN of the bar after the signal bar (never the signal bar), as a market order through the
  cost model: half the spread, `slippage_bps`, plus `slippage_atr` x ATR(14) of the signal bar (rounded up to
  the tick, against the trader), then commission. Stop and target are the setup's levels.
  Not entered (each counted with its reason): no next bar (end of data); the next bar opens more than
  `max_age_bars` bars of market time after the signal (a data gap: the setup would be stale); the entry bar
  opens at or beyond the stop or the target (a mechanical trader does not buy below his own stop: the move
  the setup was about already happened); the entry fill lands at or beyond the stop; no equity left; and a
  position size of 0 lots.
* Sizing: the desk's, exactly (`engine.sizing.Sizing.size`): fixed-fractional in the account's currency on
  the setup's entry and stop (what the signal message offers and the desk sends), with equity = initial
  equity + the account-money P&L of every trade that closed before the entry bar (realised, not marked to
  market), converted at the conversion prices of that moment (`RateHistory`), within the symbol's limits,
  floored to the lot step. A setup whose money cannot be converted (no linking price) is not traded, with the
  reason. The fill then lands where it lands: a gap or costs towards the stop risk a little more than the
  budget, and fees and exit slippage come on top, so a full stop-out is a little worse than -1R.
* Exit: `engine.exits.scan_exit` (the kernel of `find_exit`) from the entry bar itself (the entry is at
  its open, so its high and low happen after the entry), with the strategy's stop trigger (a touch, or a
  close beyond the stop: `Strategy.stop_trigger`): stop first when a bar touches both, gaps fill at
  the open, `max_hold_bars`, and with `session_end_exit` intraday positions on exchange calendars (XNSE,
  XNYS) close at the close of the last bar that starts before the calendar's flat time or (early) close
  (`MarketContext.exit_session`; NSE 5m: the 15:10 bar, flat at 15:15). The exit level is quantised to the
  tick and filled through the cost model (half spread, slippage bps, ATR(14) of the bar before the exit bar
  x `slippage_atr`, commission), exactly as the live position monitor does.
* Trades still open at the end of the data are reported as `open_trades` and left out of the trade metrics
  (win rate, expectancy...). They are never closed at a made-up price; the equity curve marks them to market
  at every close, so their open loss does show in the drawdown and the final equity.
* The equity curve covers bars [start, stop) where stop = max(end, the last exit bar + 1), or the end of the
  data while a trade is open: the window plus what its trades needed to finish. Per bar it holds the
  mark-to-market equity at the bar's close in account money (realised equity + open positions valued at the
  close mid, entry fees paid, converted at their entry's rate), the realised (closed-trade) equity and
  whether a position was open during the bar. Floats: it is a numpy series for metrics; money per trade stays
  Decimal in the `Trade` (quote currency) and `BacktestTrade.account_pnl` (account currency).
* `one_position_per_symbol`: a signal is taken only when flat at its bar's close (the previous position
  exited at or before that bar). Off: positions may overlap, each sized on realised equity.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Final

import numpy as np

from engine.bars import to_nanos
from engine.columns import candidate_columns
from engine.costs import CostModel
from engine.domain import (
    Interval,
    QualityScore,
    Rejection,
    ScoredSetup,
    Setup,
    Side,
)
from engine.exits import (
    ExitPlan,
    StopTrigger,
)
from engine.indicators import MarketContext
from engine.metrics import BacktestMetrics, compute_metrics, trading_days_per_year
from engine.pipeline import EngineConfig, ValidationRules, candidates, score_setup, validate
from engine.results import BacktestTrade, Built, EquityCurve, Held, Proposal, TradeRecord
from engine.sizing import RateHistory, Sizing
from engine.strategy import Strategy
from engine.trade_book import (
    SKIP_IN_POSITION,
    Simulation,
    TradeBook,
    rejection_key,
)

SKIP_WARMUP: Final = "signal inside the strategy's warm-up (a live scan would refuse: insufficient history)"


@dataclass(frozen=True)
class BacktestConfig:
    """Money, costs and position rules of a backtest.

    Money is in `sizing.account_currency` (the bot's account), or in the instrument's quote currency when that
    is None; `rates` converts between them over time, as the desk's rate book does live.
    """

    equity: Decimal = Decimal(10000)
    sizing: Sizing = field(default_factory=Sizing)
    rates: RateHistory = field(default_factory=RateHistory)
    costs: CostModel = field(default_factory=CostModel)
    slippage_atr: float = 0.0
    max_hold_bars: int | None = None
    session_end_exit: bool = True
    one_position_per_symbol: bool = True
    score_setups: bool = True
    stop_triggers: Mapping[str, StopTrigger] = field(default_factory=dict)  # by strategy; default: a touch
    exit_plans: Mapping[str, ExitPlan] = field(default_factory=dict)  # trade management by strategy; default none

    def __post_init__(self) -> None:
        if not isinstance(self.equity, Decimal) or not self.equity.is_finite() or self.equity <= 0:
            raise ValueError(f"equity must be a positive finite Decimal, was {self.equity!r}")
        if not isinstance(self.sizing, Sizing) or not isinstance(self.rates, RateHistory):
            raise ValueError(f"sizing and rates must be a Sizing and a RateHistory, were {self.sizing!r}, {self.rates}")
        if not isinstance(self.costs, CostModel):
            raise ValueError(f"costs must be a CostModel, was {self.costs!r}")
        if not math.isfinite(self.slippage_atr) or self.slippage_atr < 0:
            raise ValueError(f"slippage_atr must be a finite fraction of ATR >= 0, was {self.slippage_atr}")
        if self.max_hold_bars is not None and (isinstance(self.max_hold_bars, bool) or self.max_hold_bars < 1):
            raise ValueError(f"max_hold_bars must be at least 1 bar or None, was {self.max_hold_bars!r}")

    @property
    def risk_fraction(self) -> Decimal:
        return self.sizing.risk_fraction


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Everything one backtest produced: trades, counts with reasons, the equity curve and the metrics."""

    strategy: str
    params: Mapping[str, Any]
    symbol: str
    interval: Interval
    first_bar: datetime | None  # open time of the equity curve's first bar
    last_bar: datetime | None  # open time of its last bar
    config: BacktestConfig
    trades: Built[TradeRecord, BacktestTrade]  # closed, in entry order
    open_trades: Built[TradeRecord, BacktestTrade]  # still open at the end of data: not in the trade metrics
    signals: int  # bars in [start, end) where the strategy fired
    setups: Built[Proposal, Setup]  # candidates that passed validation (and the minimum score), in bar order
    scores: Mapping[str, QualityScore]  # quality score by signal id (empty when not scoring)
    rejections: int
    rejection_reasons: tuple[tuple[str, int], ...]  # numbers masked as '#', most frequent first
    skips: tuple[tuple[str, int], ...]  # fired or valid but not traded, by reason
    equity: EquityCurve
    metrics: BacktestMetrics

    def top_rejections(self, n: int = 5) -> tuple[tuple[str, int], ...]:
        """Return the `n` most frequent rejection reasons with their counts."""
        return self.rejection_reasons[:n]


def backtest(
    ctx: MarketContext,
    strategy: Strategy[Any],
    engine: EngineConfig,
    config: BacktestConfig,
    *,
    start: int = 0,
    end: int | None = None,
) -> BacktestResult:
    """Backtest `strategy` on the bars of `ctx`, taking signals from bars in [start, end)."""
    n = len(ctx)
    stop_at = n if end is None else end
    if not 0 <= start <= stop_at <= n:
        raise ValueError(f"backtest window must satisfy 0 <= start <= end <= {n} (bars), was {start}..{stop_at}")
    instrument = ctx.instrument
    if not strategy.applies_to(instrument):
        raise ValueError(f"{strategy.name} does not apply to {instrument.symbol} {instrument.interval}")
    if not config.score_setups and engine.min_score > 0:
        raise ValueError(f"score_setups=False cannot apply the engine's minimum quality score {engine.min_score:g}")

    if strategy.stop_trigger is not StopTrigger.TOUCH:
        triggers = {**config.stop_triggers, strategy.name: strategy.stop_trigger}
        config = dataclasses.replace(config, stop_triggers=MappingProxyType(triggers))
    signals = strategy.signals(ctx)
    fired = signals.fired()
    fired = fired[(fired >= start) & (fired < stop_at)]
    book = TradeBook(ctx, config, engine.rules)
    warm = fired < strategy.warmup - 1
    if bool(warm.any()):
        book.skips[SKIP_WARMUP] += int(warm.sum())
    fired = fired[~warm]

    setups: list[Proposal] = []
    scores: dict[str, QualityScore] = {}
    rejected: Counter[str] = Counter()
    sheet = engine.scorer.sheet(ctx, fired) if config.score_setups else None  # the score's inputs, gathered once
    columns = candidate_columns(ctx, signals, fired, engine.rules, config.costs, config.slippage_atr, book.atr)
    rows = columns.rows() if columns is not None else None
    k = 0
    while k < len(fired):
        i = int(fired[k])
        if book.busy(i):  # jump to the first signal at or after the position's exit bar
            resume = int(np.searchsorted(fired, book.busy_until, side="left"))
            book.skips[SKIP_IN_POSITION] += resume - k
            k = resume
            continue
        k += 1
        decided: tuple[int, int] | None = None
        row = rows[k - 1] if rows is not None else None
        proposal: Proposal | None = None
        if row is not None and row[0]:  # the columns validated it: its levels, and how it enters
            made = _column_proposal(ctx, strategy, i, *row[1:5])
            if isinstance(made, str):
                rejected[rejection_key(made)] += 1
                continue
            proposal, decided = made, (row[5], row[6])
        else:  # the scalar path: validation's reason for a rejection, or what the columns could not decide
            (candidate,) = candidates(strategy, ctx, signals, np.array([i], dtype=np.int64))
            valid = validate(
                instrument, ctx.calendar, candidate, candidate.bar_time + instrument.interval.delta, engine.rules
            )
            if isinstance(valid, Rejection):
                rejected[rejection_key(valid.reason)] += 1
                continue
            proposal = Proposal.of(valid)
        score: QualityScore | None = None
        if config.score_setups:
            assessed = score_setup(ctx, proposal.setup, i, engine, sheet, k - 1)
            if isinstance(assessed, Rejection):
                rejected[rejection_key(assessed.reason)] += 1
                continue
            score = assessed.score
            scores[assessed.setup.signal_id] = score
        setups.append(proposal)
        book.offer(proposal, score, i, decided)

    entered = book.entered  # in entry order: the signal bars' order, one trade a bar
    last_needed = max((n if t.exit_index is None else t.exit_index + 1 for t in entered), default=stop_at)
    curve_stop = max(stop_at, last_needed)
    curve = equity_curve(ctx, entered, config.equity, start=start, stop=curve_stop)
    metrics = compute_metrics(book.closed, curve)
    return BacktestResult(
        strategy=strategy.name,
        params=MappingProxyType(dataclasses.asdict(strategy.params)),
        symbol=instrument.symbol,
        interval=instrument.interval,
        first_bar=ctx.bars.bar_time(start) if curve_stop > start else None,
        last_bar=ctx.bars.bar_time(curve_stop - 1) if curve_stop > start else None,
        config=config,
        trades=Built(book.closed, TradeRecord.build),
        open_trades=Built(book.still_open, TradeRecord.build),
        signals=len(fired) + int(warm.sum()),
        setups=Built(setups, _SETUP),
        scores=MappingProxyType(scores),
        rejections=sum(rejected.values()),
        rejection_reasons=tuple(rejected.most_common()),
        skips=book.skip_counts(),
        equity=curve,
        metrics=metrics,
    )


def simulate(
    ctx: MarketContext,
    setups: Sequence[ScoredSetup],
    config: BacktestConfig,
    *,
    rules: ValidationRules | None = None,
) -> Simulation:
    """Turn validated setups of `ctx`'s instrument into trades with the backtester's entry, sizing and exit rules.

    Setups are taken in bar order (ties by strategy, then side); each must sit on a bar of `ctx`. `rules`
    gives `max_age_bars` for the entry's staleness check (default: `ValidationRules()`).
    """
    instrument = ctx.instrument
    times = ctx.bars.time
    indexed: list[tuple[int, str, str, ScoredSetup]] = []
    for scored in setups:
        setup = scored.setup
        if setup.symbol != instrument.symbol or setup.timeframe != instrument.interval:
            raise ValueError(
                f"setup {setup.signal_id} is for {setup.symbol} {setup.timeframe}, not "
                f"{instrument.symbol} {instrument.interval}"
            )
        ns = to_nanos(setup.bar_time)
        i = int(np.searchsorted(times, ns))
        if i >= len(times) or int(times[i]) != ns:
            raise ValueError(f"setup {setup.signal_id}: bar {setup.bar_time:%Y-%m-%dT%H:%MZ} is not in the bars")
        indexed.append((i, setup.strategy, setup.side.value, scored))
    indexed.sort(key=lambda row: row[:3])
    book = TradeBook(ctx, config, rules if rules is not None else ValidationRules())
    for i, _, _, scored in indexed:
        if book.busy(i):
            book.skips[SKIP_IN_POSITION] += 1
            continue
        book.offer(scored.setup, scored.score if config.score_setups else None, i)
    return book.result()


def equity_curve(ctx: MarketContext, trades: Iterable[Held], equity: Decimal, *, start: int, stop: int) -> EquityCurve:
    """Build the mark-to-market and realised equity over bars [start, stop) of `ctx` for `trades` (open ones too)."""
    bars = ctx.bars
    if not 0 <= start <= stop <= len(bars):
        raise ValueError(f"equity curve window must satisfy 0 <= start <= stop <= {len(bars)}, was {start}..{stop}")
    m = stop - start
    close = bars.close[start:stop]
    initial = float(equity)
    realized_steps = np.zeros(m)
    # Open positions add close x units - (entry x units + fees) on their held bars: both terms are step
    # functions of the bar, built from +/- at the ends of each holding range and one cumulative sum.
    # Collected per trade, then added in the same order (`np.add.at` is unbuffered): the same float sums.
    at: list[int] = []  # first bar, bar after the last held, per trade
    units_at: list[float] = []
    cost_at: list[float] = []
    held_at: list[int] = []  # first bar, bar after the last, per trade
    realized_at: list[int] = []
    realized_pnl: list[float] = []
    for t in trades:
        last = (stop - 1 if t.exit_index is None else t.exit_index) - start
        first = t.entry_index - start
        if first < 0 or last >= m:
            raise ValueError(f"trade {t.trade_id} lies outside the equity curve window {start}..{stop}")
        rate = t.entry_rate
        units = float(t.units) * t.sign * rate
        cost = float(t.entry_price) * units + float(t.entry_fees) * rate
        held_to = last + 1 if t.exit_index is None else last  # the exit bar holds the realised P&L instead
        at += (first, held_to)
        units_at += (units, -units)
        cost_at += (cost, -cost)
        held_at += (first, last + 1)
        if t.exit_index is not None:
            realized_at.append(last)
            realized_pnl.append(float(t.money or 0))
    units_steps, cost_steps = np.zeros(m + 1), np.zeros(m + 1)
    open_steps, held_steps = np.zeros(m + 1, dtype=np.int64), np.zeros(m + 1, dtype=np.int64)
    ends, held, exits = (np.asarray(x, dtype=np.intp) for x in (at, held_at, realized_at))
    np.add.at(units_steps, ends, units_at)
    np.add.at(cost_steps, ends, cost_at)
    np.add.at(open_steps, ends, np.tile([1, -1], len(ends) // 2))
    np.add.at(held_steps, held, np.tile([1, -1], len(held) // 2))
    np.add.at(realized_steps, exits, realized_pnl)
    unrealized = close * np.cumsum(units_steps[:m]) - np.cumsum(cost_steps[:m])
    unrealized[np.cumsum(open_steps[:m]) == 0] = 0.0  # flat: exactly zero, not the residue of + and - sums
    in_position = np.cumsum(held_steps[:m]) > 0
    realized = initial + np.cumsum(realized_steps)
    return EquityCurve(
        initial=initial,
        interval=bars.interval,
        time=bars.time[start:stop],
        day=ctx.session_day[start:stop],
        equity=realized + unrealized,
        realized=realized,
        in_position=in_position,
        trading_days_per_year=trading_days_per_year(ctx.instrument.calendar),
    )


def _column_proposal(
    ctx: MarketContext, strategy: Strategy[Any], i: int, sign: int, entry: int, stop: int, target: int
) -> Proposal | str:
    """The setup of a candidate whose levels (in ticks) the columns validated, to be built when used: the
    calendar's entry block still applies, and a setup whose own invariants would refuse it is built now, for the
    reason as `validate` words it."""
    instrument = ctx.instrument
    if ctx.calendar.blocks_entries:
        blocked = ctx.calendar.entry_block(ctx.bars.bar_time(i) + instrument.interval.delta)
        if blocked is not None:
            return blocked
    side = Side.LONG if sign > 0 else Side.SHORT
    tick = instrument.tick_size
    levels = Decimal(entry) * tick, Decimal(stop) * tick, Decimal(target) * tick
    make = partial(_setup, ctx, strategy, i, side, levels)
    if min(entry, stop, target) > 0 and sign * (entry - stop) > 0 and sign * (target - entry) > 0:  # `Setup` takes it
        return Proposal(strategy.name, instrument.symbol, side, levels, (entry, stop), make)
    try:
        return Proposal.of(make())
    except ValueError as exc:
        return str(exc)


def _setup(
    ctx: MarketContext, strategy: Strategy[Any], i: int, side: Side, levels: tuple[Decimal, Decimal, Decimal]
) -> Setup:
    instrument = ctx.instrument
    entry, stop, target = levels
    return Setup(
        strategy.name,
        instrument.symbol,
        side,
        entry,
        stop,
        (target,),
        ctx.bars.bar_time(i),
        instrument.interval,
        strategy.explain(ctx, i, side),
    )


_SETUP: Final = attrgetter("setup")
