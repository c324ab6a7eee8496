"""The backtester's trade logic: entries, sizing, exits and costs, one setup at a time (`engine.backtest` sets
out the rules; `backtest` and `simulate` both trade through a `TradeBook`)."""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from engine.bars import from_nanos
from engine.columns import Entry
from engine.costs import commission, exit_fill_price, market_fill
from engine.domain import (
    QualityScore,
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
from engine.pipeline import ValidationRules
from engine.results import BacktestTrade, Proposal, TradeRecord
from engine.sizing import TickSizer, pnl_to_account
from engine.trading import ExitReason, net_pnl

if TYPE_CHECKING:
    from engine.backtest import BacktestConfig

SESSION_CALENDARS: Final = frozenset({"XNSE", "XNYS"})
ATR_PERIOD: Final = 14

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

_HOUR_NS: Final = 3_600 * 1_000_000_000
_DAY_NS: Final = 24 * _HOUR_NS
_EPOCH_WEEKDAY: Final = 3  # 1970-01-01 was a Thursday
ENTRY_SKIPS: Final = MappingProxyType(
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
class Simulation:
    """Trades made from a list of setups: closed ones, ones still open at the end of data, and skips."""

    trades: tuple[BacktestTrade, ...]
    open_trades: tuple[BacktestTrade, ...]
    skips: tuple[tuple[str, int], ...]


class TradeBook:
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
        self.closed: list[TradeRecord] = []
        self.still_open: list[TradeRecord] = []
        self.entered: list[TradeRecord] = []  # both, in entry order
        self.skips: Counter[str] = Counter()
        self.open_notional: list[tuple[int, int, Decimal]] = []  # heap of (exit bar, sequence, notional) still held

    def busy(self, i: int) -> bool:
        """Whether a signal at bar `i` must be skipped because the symbol still holds a position at its close."""
        return self.config.one_position_per_symbol and self.busy_until > i

    def offer(
        self, setup: Setup | Proposal, score: QualityScore | None, i: int, decided: tuple[int, int] | None = None
    ) -> None:
        """Enter `setup` (signalled at bar `i`) at the next bar's open and find its exit, or count why not.

        `decided` is how `engine.columns` entered it: (an `Entry`, the fill in ticks); None: decide here."""
        if isinstance(setup, Setup):
            setup = Proposal.of(setup)
        if decided is None or decided[0] == Entry.SCALAR:
            entered = self._entry(setup, i)
            if entered is None:
                return
            entry_ns, price = entered
        elif decided[0] == Entry.FILL:
            entry_ns, price = int(self.bars.time[i + 1]), Decimal(decided[1]) * self.instrument.tick_size
        else:
            self.skips[ENTRY_SKIPS[Entry(decided[0])]] += 1
            return
        self._enter(setup, score, i, entry_ns, price)

    def _entry(self, setup: Setup | Proposal, i: int) -> tuple[int, Decimal] | None:
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
            late = self.ctx.calendar.open_duration(from_nanos(signal_close), from_nanos(entry_ns))
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

    def _enter(self, setup: Proposal, score: QualityScore | None, i: int, entry_ns: int, price: Decimal) -> None:
        """Size the position entered at `price` at the open of bar `i + 1` (`entry_ns`) and find its exit."""
        j = i + 1
        instrument, costs, side = self.instrument, self.config.costs, setup.side
        stop, target = float(setup.stop), float(setup.target)
        self._realise(j)
        if self.equity <= 0:
            self.skips[SKIP_NO_EQUITY] += 1
            return
        prices = _NO_PRICES
        if self.converts:
            prices = self.config.rates.prices_at(from_nanos(int(self.bars.time[i]) + instrument.interval.nanos))
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
        exited: tuple[int, Decimal, ExitReason, Decimal] | None = None
        found = None
        if plan is not None and plan.active:
            managed = self._managed(j, side, float(price), stop, target, plan)
            if managed.done:
                exit_index = managed.legs[-1].bar_index
                close_ns = self._close_ns(exit_index)
                _, fill, reason, fees = managed_fill(managed, quantity, side, instrument, costs, from_nanos(close_ns))
                exited = (close_ns, fill, reason, fees)
        else:
            found = self._exit(j, side, stop, target, trigger)
        if found is not None:
            exit_index, exit_level, exit_reason = found
            exit_atr = 0.0 if self.atr is None else float(self.atr[exit_index - 1])
            closing = Side.SHORT if side is Side.LONG else Side.LONG
            exit_price = self._atr_slipped(self._closing_fill(exit_level, side), closing, exit_atr)
            exited = (
                self._close_ns(exit_index),
                exit_price,
                exit_reason,
                commission(exit_price, quantity, instrument, costs),
            )
        contract_size = instrument.contract_size
        pnl = r = account_pnl = None
        if exited is not None:
            pnl, r = net_pnl(side, quantity, contract_size, price, setup.stop, (exited[1], entry_fees, exited[3]))
            account_pnl = self._to_account(pnl, exited[1], exited[0], entry_rate)
        record = TradeRecord(
            setup,
            score,
            (i, j, exit_index),
            (hour, weekday),
            quantity,
            contract_size,
            (entry_ns, price, entry_fees),
            exited,
            (self.currency, entry_rate, budget_risk, notional, account_pnl),
            (pnl, r),
        )
        heapq.heappush(
            self.open_notional, (self.n if exit_index is None else exit_index, len(self.open_notional), notional)
        )
        self.entered.append(record)
        if exit_index is None or account_pnl is None:
            self.still_open.append(record)
            self.busy_until = self.n
            return
        self.closed.append(record)
        heapq.heappush(self.pending, (exit_index, len(self.closed), account_pnl))
        self.busy_until = max(self.busy_until, exit_index)

    def _size(
        self, setup: Proposal, prices: Mapping[str, Decimal], held: Decimal
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
                ticks = setup.ticks
                if ticks is None:
                    tick = instrument.tick_size
                    (entry, off_entry), (stop, off_stop) = divmod(setup.entry, tick), divmod(setup.stop, tick)
                    if not (off_entry or off_stop):  # levels on the tick (a validated setup's always are)
                        ticks = int(entry), int(stop)
                if ticks is not None:
                    quantity, risk, notional = self.sizer.size(*ticks, self.equity, rate, held)
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

    def skip_counts(self) -> tuple[tuple[str, int], ...]:
        """Why offered setups were not traded, most frequent first."""
        return tuple(sorted(self.skips.items(), key=lambda kv: (-kv[1], kv[0])))

    def result(self) -> Simulation:
        closed, still_open = (tuple(r.build() for r in records) for records in (self.closed, self.still_open))
        return Simulation(closed, still_open, self.skip_counts())

    def _to_account(self, pnl: Decimal, exit_price: Decimal, exit_ns: int, entry_rate: Fraction) -> Decimal:
        """Net P&L in account money at the exit's conversion price (the entry's when none is known by then)."""
        if not self.converts:
            return pnl_to_account(pnl, entry_rate)
        prices = self.config.rates.prices_at(from_nanos(exit_ns))
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
    ) -> tuple[int, float, ExitReason] | None:
        """The exit of a position entered at bar `j`'s open: (bar index, fill level, reason) or None."""
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
        return found

    def _close_ns(self, index: int) -> int:
        return int(self.bars.time[index]) + self.interval_ns

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


def rejection_key(reason: str) -> str:
    """Mask the numbers of a rejection reason with '#', so rejections by the same rule group together."""
    return _NUMBER.sub("#", reason)
