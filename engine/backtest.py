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
  exit fills run in whole ticks (`engine.sizing.TickSizer`, `_Book._closing_fill`), to the same results as
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
import heapq
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Final

import numpy as np

from engine.bars import to_nanos
from engine.columns import Entry, candidate_columns
from engine.costs import CostModel, commission, exit_fill_price, market_fill
from engine.domain import (
    Interval,
    QualityScore,
    Rejection,
    ScoredSetup,
    Setup,
    Side,
    float_step,
    float_units,
    quantize_to_step,
    to_decimal,
)
from engine.exits import (
    TRAIL_ATR_PERIOD,
    ExitPlan,
    ManagedExit,
    StopTrigger,
    TrailBy,
    manage_exit,
    managed_fill,
    scan_exit,
)
from engine.indicators import MarketContext
from engine.metrics import BacktestMetrics, compute_metrics, trading_days_per_year
from engine.pipeline import EngineConfig, ValidationRules, candidates, score_setup, validate
from engine.results import BacktestTrade, EquityCurve
from engine.sizing import RateHistory, Sizing, TickSizer, pnl_to_account
from engine.strategy import Strategy
from engine.trading import ExitReason, TradeKind, trade_from_setup

SESSION_CALENDARS: Final = frozenset({"XNSE", "XNYS"})
ATR_PERIOD: Final = 14

SKIP_WARMUP: Final = "signal inside the strategy's warm-up (a live scan would refuse: insufficient history)"
SKIP_IN_POSITION: Final = "already in a position on this symbol"
SKIP_NO_NEXT_BAR: Final = "no bar after the signal bar to enter on (end of data)"
SKIP_STALE: Final = "the next bar opens more than max_age_bars of market time after the signal (data gap)"
SKIP_GAP_STOP: Final = "the entry bar opened at or beyond the stop"
SKIP_GAP_TARGET: Final = "the entry bar opened at or beyond the target"
SKIP_FILL_STOP: Final = "the entry fill (with spread and slippage) is at or beyond the stop"
SKIP_NO_ATR: Final = f"ATR({ATR_PERIOD}) not available at the signal bar for ATR slippage"
SKIP_NO_EQUITY: Final = "no equity left to risk"
SKIP_ZERO_SIZE: Final = "position too small for the risk budget (0 lots)"
SKIP_NO_RATE: Final = "cannot size in the account currency: no conversion price"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_NS: Final = 3_600 * 1_000_000_000
_DAY_NS: Final = 24 * _HOUR_NS
_EPOCH_WEEKDAY: Final = 3  # 1970-01-01 was a Thursday
_ENTRY_SKIPS: Final = MappingProxyType(
    {
        Entry.NO_NEXT_BAR: SKIP_NO_NEXT_BAR,
        Entry.GAP_STOP: SKIP_GAP_STOP,
        Entry.GAP_TARGET: SKIP_GAP_TARGET,
        Entry.NO_ATR: SKIP_NO_ATR,
        Entry.FILL_STOP: SKIP_FILL_STOP,
    }
)
_NO_PRICES: Final[Mapping[str, Decimal]] = MappingProxyType({})
_NUMBER: Final = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


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


@dataclass(frozen=True)
class Simulation:
    """Trades made from a list of setups: closed ones, ones still open at the end of data, and skips."""

    trades: tuple[BacktestTrade, ...]
    open_trades: tuple[BacktestTrade, ...]
    skips: tuple[tuple[str, int], ...]

    @property
    def all_trades(self) -> tuple[BacktestTrade, ...]:
        return tuple(sorted((*self.trades, *self.open_trades), key=lambda t: (t.entry_index, t.trade.trade_id)))


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
    trades: tuple[BacktestTrade, ...]  # closed, in entry order
    open_trades: tuple[BacktestTrade, ...]  # still open at the end of data: not in the trade metrics
    signals: int  # bars in [start, end) where the strategy fired
    setups: tuple[Setup, ...]  # candidates that passed validation (and the minimum score), in bar order
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
    book = _Book(ctx, config, engine.rules)
    warm = fired < strategy.warmup - 1
    if bool(warm.any()):
        book.skips[SKIP_WARMUP] += int(warm.sum())
    fired = fired[~warm]

    setups: list[Setup] = []
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
        if row is not None and row[0]:  # the columns validated it: its levels, and how it enters
            made = _column_setup(ctx, strategy, i, *row[1:5])
            if isinstance(made, str):
                rejected[rejection_key(made)] += 1
                continue
            setup, decided = made, (row[5], row[6])
        else:  # the scalar path: validation's reason for a rejection, or what the columns could not decide
            (candidate,) = candidates(strategy, ctx, signals, np.array([i], dtype=np.int64))
            valid = validate(
                instrument, ctx.calendar, candidate, candidate.bar_time + instrument.interval.delta, engine.rules
            )
            if isinstance(valid, Rejection):
                rejected[rejection_key(valid.reason)] += 1
                continue
            setup = valid
        score: QualityScore | None = None
        if config.score_setups:
            assessed = score_setup(ctx, setup, i, engine, sheet, k - 1)
            if isinstance(assessed, Rejection):
                rejected[rejection_key(assessed.reason)] += 1
                continue
            setup, score = assessed.setup, assessed.score
            scores[setup.signal_id] = score
        setups.append(setup)
        book.offer(setup, score, i, decided)

    simulation = book.result()
    all_trades = simulation.all_trades
    last_needed = max(
        (n if t.exit_index is None else t.exit_index + 1 for t in all_trades),
        default=stop_at,
    )
    curve_stop = max(stop_at, last_needed)
    curve = equity_curve(ctx, all_trades, config.equity, start=start, stop=curve_stop)
    metrics = compute_metrics(simulation.trades, curve)
    return BacktestResult(
        strategy=strategy.name,
        params=MappingProxyType(dataclasses.asdict(strategy.params)),
        symbol=instrument.symbol,
        interval=instrument.interval,
        first_bar=ctx.bars.bar_time(start) if curve_stop > start else None,
        last_bar=ctx.bars.bar_time(curve_stop - 1) if curve_stop > start else None,
        config=config,
        trades=simulation.trades,
        open_trades=simulation.open_trades,
        signals=len(fired) + int(warm.sum()),
        setups=tuple(setups),
        scores=MappingProxyType(scores),
        rejections=sum(rejected.values()),
        rejection_reasons=tuple(rejected.most_common()),
        skips=simulation.skips,
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
    book = _Book(ctx, config, rules if rules is not None else ValidationRules())
    for i, _, _, scored in indexed:
        if book.busy(i):
            book.skips[SKIP_IN_POSITION] += 1
            continue
        book.offer(scored.setup, scored.score if config.score_setups else None, i)
    return book.result()


def equity_curve(
    ctx: MarketContext, trades: Iterable[BacktestTrade], equity: Decimal, *, start: int, stop: int
) -> EquityCurve:
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
    for bt in trades:
        trade = bt.trade
        last = (stop - 1 if bt.exit_index is None else bt.exit_index) - start
        first = bt.entry_index - start
        if first < 0 or last >= m:
            raise ValueError(f"trade {trade.trade_id} lies outside the equity curve window {start}..{stop}")
        units = float(trade.quantity * trade.contract_size) * trade.side.sign * bt.entry_rate
        cost = float(trade.entry_price) * units + float(trade.entry_fees) * bt.entry_rate
        held_to = last + 1 if bt.exit_index is None else last  # the exit bar holds the realised P&L instead
        at += (first, held_to)
        units_at += (units, -units)
        cost_at += (cost, -cost)
        held_at += (first, last + 1)
        if bt.exit_index is not None:
            realized_at.append(last)
            realized_pnl.append(float(bt.account_pnl if bt.account_pnl is not None else trade.pnl or 0))
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


class _Book:
    """The trade logic shared by `backtest` and `simulate`: entries, sizing, exits and costs, one setup at a time."""

    def __init__(self, ctx: MarketContext, config: BacktestConfig, rules: ValidationRules) -> None:
        instrument = ctx.instrument
        self.ctx = ctx
        self.config = config
        self.instrument = instrument
        self.bars = ctx.bars
        self.n = len(ctx.bars)
        intraday_exchange = instrument.calendar in SESSION_CALENDARS and instrument.interval.is_intraday
        self.session_day = ctx.exit_session if config.session_end_exit and intraday_exchange else None
        self.atr = ctx.ind.atr(ATR_PERIOD) if config.slippage_atr > 0 else None
        self.max_age = instrument.interval.delta * rules.max_age_bars
        self.local_time = ctx.local_time
        self.interval_ns = instrument.interval.nanos
        self.equity = config.equity
        self.converts = config.sizing.account_currency is not None  # else money is the quote currency, rate 1
        self.sizer = TickSizer.of(config.sizing, instrument, config.costs)
        self.currency = config.sizing.currency(instrument)
        self.half_spread = math.ceil(Fraction(instrument.spread) / (2 * Fraction(instrument.tick_size)))  # in ticks
        slippage_num, slippage_den = config.costs.slippage_bps.as_integer_ratio()
        exact = float_step(instrument.tick_size) is not None and slippage_den * 10_000 + slippage_num < 2**24
        self.slippage = (slippage_den * 10_000, slippage_num) if exact else None  # price x (whole +- bps) / whole
        self.pending: list[tuple[int, int, Decimal]] = []  # (exit bar, sequence, net P&L) not yet realised
        self.busy_until = -1  # exit bar of the latest position; n while it is still open at the end
        self.closed: list[BacktestTrade] = []
        self.still_open: list[BacktestTrade] = []
        self.skips: Counter[str] = Counter()
        self.open_notional: list[tuple[int, int, Decimal]] = []  # heap of (exit bar, sequence, notional) still held

    def busy(self, i: int) -> bool:
        """Whether a signal at bar `i` must be skipped because the symbol still holds a position at its close."""
        return self.config.one_position_per_symbol and self.busy_until > i

    def offer(self, setup: Setup, score: QualityScore | None, i: int, decided: tuple[int, int] | None = None) -> None:
        """Enter `setup` (signalled at bar `i`) at the next bar's open and find its exit, or count why not.

        `decided` is how `engine.columns` entered it: (an `Entry`, the fill in ticks); None: decide here."""
        if decided is None or decided[0] == Entry.SCALAR:
            entered = self._entry(setup, i)
            if entered is None:
                return
            entry_ns, price = entered
        elif decided[0] == Entry.FILL:
            entry_ns, price = int(self.bars.time[i + 1]), Decimal(decided[1]) * self.instrument.tick_size
        else:
            self.skips[_ENTRY_SKIPS[Entry(decided[0])]] += 1
            return
        self._enter(setup, score, i, entry_ns, price)

    def _entry(self, setup: Setup, i: int) -> tuple[int, Decimal] | None:
        """The entry of `setup` at the open of the bar after `i`: (its open time in ns, the fill), or None with the
        reason counted."""
        j = i + 1
        if j >= self.n:
            self.skips[SKIP_NO_NEXT_BAR] += 1
            return None
        bars, instrument, costs = self.bars, self.instrument, self.config.costs
        signal_close = int(bars.time[i]) + instrument.interval.nanos
        entry_ns = int(bars.time[j])
        if entry_ns != signal_close:
            late = self.ctx.calendar.open_duration(_utc(signal_close), _utc(entry_ns))
            if late > self.max_age:
                self.skips[SKIP_STALE] += 1
                return None
        side = setup.side
        opened = to_decimal(float(bars.open[j]), f"{instrument.symbol} open")
        gapped = gap_refusal(side, setup.stop, setup.target, opened)
        if gapped is not None:
            self.skips[gapped] += 1
            return None
        entry_atr = 0.0
        if self.atr is not None:
            entry_atr = float(self.atr[i])
            if not math.isfinite(entry_atr):
                self.skips[SKIP_NO_ATR] += 1
                return None
        price = self._atr_slipped(market_fill(instrument, opened, side, costs), side, entry_atr)
        if fill_refusal(side, setup.stop, price) is not None:
            self.skips[SKIP_FILL_STOP] += 1
            return None
        return entry_ns, price

    def _enter(self, setup: Setup, score: QualityScore | None, i: int, entry_ns: int, price: Decimal) -> None:
        """Size the position entered at `price` at the open of bar `i + 1` (`entry_ns`) and find its exit."""
        j = i + 1
        instrument, costs, side = self.instrument, self.config.costs, setup.side
        stop, target = float(setup.stop), float(setup.target)
        entered_at = _utc(entry_ns)
        self._realise(j)
        if self.equity <= 0:
            self.skips[SKIP_NO_EQUITY] += 1
            return
        prices = _NO_PRICES
        if self.converts:
            prices = self.config.rates.prices_at(_utc(int(self.bars.time[i]) + instrument.interval.nanos))
        sized = self._size(setup, prices, self._held_notional(i))
        if isinstance(sized, str):
            self.skips[sized] += 1
            return
        quantity, entry_rate, budget_risk, notional = sized
        entry_fees = commission(price, quantity, instrument, costs)
        local = int(self.local_time[j])
        hour, weekday = (local // _HOUR_NS) % 24, (local // _DAY_NS + _EPOCH_WEEKDAY) % 7
        trigger = self.config.stop_triggers.get(setup.strategy, StopTrigger.TOUCH)
        plan = self.config.exit_plans.get(setup.strategy)
        exit_index: int | None = None
        exited: tuple[datetime, Decimal, ExitReason, Decimal] | None = None
        found = None
        if plan is not None and plan.active:
            managed = self._managed(j, side, float(price), stop, target, plan)
            if managed.done:
                exit_index = managed.legs[-1].bar_index
                exited = managed_fill(managed, quantity, side, instrument, costs, self._close_time(exit_index))
        else:
            found = self._exit(j, side, stop, target, trigger)
        if found is not None:
            exit_at, exit_index, exit_level, exit_reason = found
            exit_atr = 0.0 if self.atr is None else float(self.atr[exit_index - 1])
            closing = Side.SHORT if side is Side.LONG else Side.LONG
            exit_price = self._atr_slipped(self._closing_fill(exit_level, side), closing, exit_atr)
            exited = (exit_at, exit_price, exit_reason, commission(exit_price, quantity, instrument, costs))
        trade = trade_from_setup(
            setup, TradeKind.BACKTEST, quantity, instrument.contract_size, entered_at, price, entry_fees, exited=exited
        )
        account_pnl = None
        if exited is not None and trade.pnl is not None and trade.exit_price is not None:
            account_pnl = self._to_account(trade.pnl, trade.exit_price, exited[0], entry_rate)
        record = BacktestTrade(
            trade,
            setup,
            score,
            i,
            j,
            exit_index,
            hour,
            weekday,
            currency=self.currency,
            budget_risk=budget_risk,
            initial_risk=pnl_to_account(trade.risk_money, entry_rate),
            notional=notional,
            account_pnl=account_pnl,
            entry_rate=1.0 if entry_rate == 1 else float(entry_rate),
        )
        heapq.heappush(
            self.open_notional, (self.n if exit_index is None else exit_index, len(self.open_notional), notional)
        )
        if exit_index is None or account_pnl is None:
            self.still_open.append(record)
            self.busy_until = self.n
            return
        self.closed.append(record)
        heapq.heappush(self.pending, (exit_index, len(self.closed), account_pnl))
        self.busy_until = max(self.busy_until, exit_index)

    def _size(
        self, setup: Setup, prices: Mapping[str, Decimal], held: Decimal
    ) -> tuple[Decimal, Fraction, Decimal, Decimal] | str:
        """(quantity, quote-to-account rate, risk with costs, notional) of the desk's order for `setup` on the
        realised equity with `held` notional open, or the skip's reason: `Sizing.size`, by `TickSizer` where it can."""
        sizing, instrument = self.config.sizing, self.instrument
        if self.sizer is not None:
            try:
                rate = sizing.rate(instrument, setup.entry, prices)
            except ValueError:  # no conversion price: `Sizing.size` words the refusal
                pass
            else:
                tick = instrument.tick_size
                entry, stop = int(setup.entry / tick), int(setup.stop / tick)
                quantity, risk, notional = self.sizer.size(entry, stop, self.equity, rate, held)
                if quantity > 0:
                    return quantity, rate, risk, notional
        sized = sizing.size(
            instrument, setup.entry, setup.stop, self.equity, prices, costs=self.config.costs, open_notional=held
        )
        if isinstance(sized, str):
            return sized
        if sized.quantity <= 0:
            why = sized.notes[-1] if sized.notes else SKIP_ZERO_SIZE
            return why if why == SKIP_ZERO_SIZE else rejection_key(why)
        return sized.quantity, sized.rate, sized.risk_with_costs, sized.notional

    def result(self) -> Simulation:
        order = sorted(self.skips.items(), key=lambda kv: (-kv[1], kv[0]))
        return Simulation(tuple(self.closed), tuple(self.still_open), tuple(order))

    def _to_account(self, pnl: Decimal, exit_price: Decimal, exit_at: datetime, entry_rate: Fraction) -> Decimal:
        """Net P&L in account money at the exit's conversion price (the entry's when none is known by then)."""
        if not self.converts:
            return pnl_to_account(pnl, entry_rate)
        prices = self.config.rates.prices_at(exit_at)
        try:
            return self.config.sizing.to_account(self.instrument, pnl, exit_price, prices)
        except ValueError:
            return pnl_to_account(pnl, entry_rate)

    def _held_notional(self, i: int) -> Decimal:
        """The notional of the positions open at bar `i`'s close (signals come in bar order: earlier ones are gone)."""
        while self.open_notional and self.open_notional[0][0] <= i:
            heapq.heappop(self.open_notional)
        return sum((notional for _, _, notional in self.open_notional), Decimal(0))

    def _realise(self, j: int) -> None:
        """Add to equity the account-money net P&L of every trade that exited before bar `j` opened."""
        while self.pending and self.pending[0][0] < j:
            self.equity += heapq.heappop(self.pending)[2]

    def _exit(
        self, j: int, side: Side, stop: float, target: float, trigger: StopTrigger
    ) -> tuple[datetime, int, float, ExitReason] | None:
        """The exit of a position entered at bar `j`'s open: (close time, bar index, fill level, reason) or None."""
        bars = self.bars
        found = scan_exit(
            bars.open,
            bars.high,
            bars.low,
            bars.close,
            j,
            side,
            stop,
            target,
            max_bars=self.config.max_hold_bars,
            session_day=self.session_day,
            stop_trigger=trigger,
        )
        if found is None:
            return None
        index, level, reason = found
        return _utc(int(bars.time[index]) + self.interval_ns), index, level, reason

    def _close_time(self, index: int) -> datetime:
        return _utc(int(self.bars.time[index]) + self.interval_ns)

    def _managed(self, j: int, side: Side, entry: float, stop: float, target: float, plan: ExitPlan) -> ManagedExit:
        """The legs of a managed position entered at bar `j`'s open (`engine.exits.manage_exit`)."""
        bars = self.bars
        atr = None
        if plan.trail_by is TrailBy.ATR:
            atr = self.ctx.ind.atr(TRAIL_ATR_PERIOD)
        return manage_exit(
            bars.open,
            bars.high,
            bars.low,
            bars.close,
            j,
            side,
            entry,
            stop,
            target,
            plan,
            atr=atr,
            max_bars=self.config.max_hold_bars,
            session_day=self.session_day,
        )

    def _closing_fill(self, level: float, side: Side) -> Decimal:
        """`exit_fill_price` of the exit level quantised to the tick (half-even), in whole ticks where it can: a level
        on the tick has its bid and ask a whole number of ticks away, and the slippage is an exact ratio."""
        instrument = self.instrument
        tick = instrument.tick_size
        units = float_units(level, tick, ROUND_HALF_EVEN)
        if units is not None and units > 0 and self.slippage is not None:
            whole, bps = self.slippage
            if side is Side.SHORT:  # a buy to close, at the ask: rounded up
                return Decimal(-(-(units + self.half_spread) * (whole + bps) // whole)) * tick
            sold = max(units - self.half_spread, 1) * (whole - bps) // whole
            if sold > 0:
                return Decimal(sold) * tick
        return exit_fill_price(instrument.price(level, ROUND_HALF_EVEN), side, self.config.costs, instrument)

    def _atr_slipped(self, price: Decimal, side: Side, atr: float) -> Decimal:
        """Move a fill by `slippage_atr` x `atr` against the trader (buys up, sells down), rounded to the tick."""
        if self.atr is None or atr <= 0:
            return price
        step = self.instrument.tick_size
        amount = quantize_to_step(to_decimal(self.config.slippage_atr * atr, "ATR slippage"), step, ROUND_CEILING)
        moved = price + amount if side is Side.LONG else price - amount
        if moved <= 0:
            raise ValueError(f"{self.instrument.symbol}: a sell at {price} less ATR slippage {amount} is not above 0")
        return moved


def _column_setup(
    ctx: MarketContext, strategy: Strategy[Any], i: int, sign: int, entry: int, stop: int, target: int
) -> Setup | str:
    """The setup of a candidate whose levels (in ticks) the columns validated: the calendar's entry block and the
    setup's own invariants still apply (a reason when they refuse, as `validate` words it)."""
    instrument = ctx.instrument
    bar_time = ctx.bars.bar_time(i)
    if ctx.calendar.blocks_entries:
        blocked = ctx.calendar.entry_block(bar_time + instrument.interval.delta)
        if blocked is not None:
            return blocked
    side = Side.LONG if sign > 0 else Side.SHORT
    tick = instrument.tick_size
    levels = Decimal(entry) * tick, Decimal(stop) * tick, (Decimal(target) * tick,)
    try:
        return Setup(
            strategy.name,
            instrument.symbol,
            side,
            *levels,
            bar_time,
            instrument.interval,
            strategy.explain(ctx, i, side),
        )
    except ValueError as exc:
        return str(exc)


def gap_refusal(side: Side, stop: Decimal, target: Decimal, opened: Decimal) -> str | None:
    """Why an entry at a bar's open is not taken: the bar opened at or beyond the stop or the target (the move
    the setup was about already happened), or None. The paper broker's next-open fills apply the same rule."""
    sign = side.sign
    if sign * (opened - stop) <= 0:
        return SKIP_GAP_STOP
    if sign * (target - opened) <= 0:
        return SKIP_GAP_TARGET
    return None


def fill_refusal(side: Side, stop: Decimal, fill: Decimal) -> str | None:
    """Why an entry fill is not taken: with spread and slippage it lands at or beyond the stop, or None."""
    return SKIP_FILL_STOP if side.sign * (fill - stop) <= 0 else None


def _utc(ns: int) -> datetime:
    """Return the UTC datetime of whole-microsecond nanoseconds (bar times), without pandas."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def rejection_key(reason: str) -> str:
    """Mask the numbers of a rejection reason with '#', so rejections by the same rule group together."""
    return _NUMBER.sub("#", reason)
