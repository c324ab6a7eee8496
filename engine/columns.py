"""Every candidate of a backtest decided at once: its levels on the tick grid and how it would enter.

The backtester validates a candidate (`engine.pipeline.validate`) and enters it at the next bar's open through the
cost model (`engine.costs`) one at a time, in Decimal. Over a long history that was much of its time, for
decisions that do not depend on the book: the levels, the validation rules on them, the entry bar, a gap through a
level and the entry fill are fixed by the candidate's bar and the next one. `candidate_columns` decides them for
every bar where a strategy fired, with numpy over whole ticks, to the same results:

* a level is rounded as `quantize_float` rounds it (the float's shortest repr is the number meant);
* a target from the strategy's reward:risk is the quantised entry plus exactly that multiple of the quantised risk;
* a bar opens at or beyond a level when its float does (a tick multiple of at most 15 digits and the float's repr
  compare as their doubles do: rounding to the nearest double is monotone and both round-trip);
* the fill is the ask (buys) or the bid (sells, at least one tick) of half the spread around the open, moved by the
  slippage and by `slippage_atr` x ATR(14) of the signal bar, each rounded to the tick against the trader.

Whatever a double cannot decide exactly (a value within a hair of a tick boundary, prices beyond 2^30 ticks), an
entry bar that opens after a gap in the data (the calendar judges its staleness) and a fill the scalar functions
refuse with an error are left to the scalar path (`Entry.SCALAR`). A candidate the columns reject is validated
again by `validate` for its reason, the text the trader reads; one they accept still passes the calendar's entry
block and the `Setup`'s own invariants. Tests hold the columns to the scalar path over the shared market data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import IntEnum
from fractions import Fraction
from typing import Final

import numpy as np

from engine.bars import BoolArray, FloatArray, IntArray
from engine.costs import CostModel
from engine.domain import FAST_MAX_STEPS, float_step, quantize_float, to_decimal
from engine.indicators import MarketContext
from engine.pipeline import ValidationRules
from engine.strategy import SignalArrays

MAX_FLOAT_TICKS: Final = float(2**30)  # within this a double's error on a price in ticks stays under 1e-6 tick
TIE: Final = 1e-5  # a price this close (in ticks) to a whole tick is rounded by the scalar path
MAX_RATIO_TERM: Final = 2**20  # a reward:risk ratio with terms this small is applied in int64
MAX_SLIPPAGE_TERM: Final = 2**24


class Entry(IntEnum):
    """How a valid candidate enters at the next bar's open, in the order the backtester checks (`TradeBook.offer`)."""

    FILL = 0
    NO_NEXT_BAR = 1
    GAP_STOP = 2
    GAP_TARGET = 3
    NO_ATR = 4
    FILL_STOP = 5
    SCALAR = 6  # the scalar path decides: a late entry bar, an undecided rounding, a refused fill


@dataclass(frozen=True, eq=False)
class CandidateColumns:
    """The candidates of one strategy at the bars where it fired (in bar order), decided as columns.

    Levels and fills are in whole ticks; they mean something where `valid` (and the fill where `entry` is FILL).
    """

    index: IntArray  # the signal bar
    sign: IntArray  # +1 long, -1 short
    valid: BoolArray  # passed the validation rules on the levels (else rejected, or too large to decide here)
    entry: IntArray
    stop: IntArray
    target: IntArray
    state: IntArray  # an `Entry` per candidate
    fill: IntArray

    def rows(self) -> list[tuple[bool, int, int, int, int, int, int]]:
        """(valid, sign, entry, stop, target, state, fill) per candidate as Python values, for the backtester's loop."""
        return list(
            zip(
                self.valid.tolist(),
                self.sign.tolist(),
                self.entry.tolist(),
                self.stop.tolist(),
                self.target.tolist(),
                self.state.tolist(),
                self.fill.tolist(),
                strict=True,
            )
        )


def quantize_units(values: FloatArray, step: Decimal, rounding: str) -> tuple[IntArray, BoolArray]:
    """Whole steps of each float as `quantize_float` floors or ceils it, and where the double decided it exactly
    (elsewhere `quantize_float` must: non-finite, too large, or a step that is neither k nor 1/k)."""
    if rounding not in (ROUND_FLOOR, ROUND_CEILING):
        raise ValueError(f"quantize_units floors or ceils, was {rounding}")
    shape = float_step(step)
    if shape is None:
        return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    scale, divide = shape
    with np.errstate(invalid="ignore", over="ignore"):
        n = values * scale if divide else values / scale
        decided = np.isfinite(n) & (np.abs(n) < FAST_MAX_STEPS)
        r = np.rint(np.where(decided, n, 0.0))
        base = r / scale if divide else r * scale
        floor = rounding == ROUND_FLOOR
        units = np.where(values >= base, r, r - 1) if floor else np.where(values > base, r + 1, r)
    return units.astype(np.int64), decided


def candidate_columns(
    ctx: MarketContext,
    signals: SignalArrays,
    fired: IntArray,
    rules: ValidationRules,
    costs: CostModel,
    slippage_atr: float,
    atr: FloatArray | None,
) -> CandidateColumns | None:
    """Decide the candidates at `fired` (bars where `signals` fired, ascending); None when the instrument's tick is
    neither a whole number nor one over a whole number (the scalar path decides everything then)."""
    instrument = ctx.instrument
    tick = instrument.tick_size
    shape = float_step(tick)
    if shape is None:
        return None
    scale, divide = shape
    sign = np.where(signals.direction[fired] > 0, 1, -1).astype(np.int64)
    long = sign > 0
    e, s, t = signals.entry[fired], signals.stop[fired], signals.target[fired]
    stated = signals.reward_risk is not None
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(e) & (e > 0) & np.isfinite(s) & (s > 0) & (sign * (e - s) > 0)
        if not stated:
            valid &= np.isfinite(t) & (t > 0) & (sign * (t - e) > 0)

    symbol = instrument.symbol
    entry = _levels(e, long, ROUND_CEILING, ROUND_FLOOR, valid, tick, f"{symbol} price")
    stop = _levels(s, long, ROUND_FLOOR, ROUND_CEILING, valid, tick, f"{symbol} price")
    distance = np.abs(entry - stop)
    if signals.reward_risk is None:
        target = _levels(t, long, ROUND_FLOOR, ROUND_CEILING, valid, tick, f"{symbol} price")
    else:
        target = entry + sign * _times_ratio_floor(distance, signals.reward_risk, valid)
    valid &= (sign * (entry - stop) > 0) & (sign * (target - entry) > 0)
    valid &= (np.minimum(stop, target) > 0) & (entry > 0)  # a level rounded to 0: the setup refuses it
    valid &= distance >= rules.min_stop_ticks
    if instrument.spread > 0:
        spreads = Fraction(instrument.spread) * Fraction(to_decimal(rules.min_stop_spreads, "min_stop_spreads"))
        valid &= distance > math.floor(spreads / Fraction(tick))
    valid &= np.maximum(np.abs(entry), np.maximum(np.abs(stop), np.abs(target))) < MAX_FLOAT_TICKS

    bars = ctx.bars
    n = len(bars)
    nxt = fired + 1
    has_next = nxt < n
    at = np.minimum(nxt, n - 1)
    late = has_next & (bars.time[at] != bars.time[fired] + instrument.interval.nanos)
    opened = bars.open[at]
    stop_f, target_f = _floats(stop, scale, divide), _floats(target, scale, divide)
    with np.errstate(invalid="ignore"):
        gap_stop = np.where(long, opened <= stop_f, opened >= stop_f)
        gap_target = np.where(long, opened >= target_f, opened <= target_f)
        bad_open = ~(np.isfinite(opened) & (opened > 0))
    no_atr = np.zeros(len(fired), dtype=bool)
    atr_at = np.zeros(len(fired))
    if atr is not None:
        atr_at = atr[fired]
        no_atr = ~np.isfinite(atr_at)
    fill, decided = _fills(opened, long, tick, instrument.spread, costs)
    if atr is not None and slippage_atr > 0:
        amount, known = quantize_units(slippage_atr * np.where(no_atr, 0.0, atr_at), tick, ROUND_CEILING)
        amount = np.where(atr_at > 0, amount, 0)
        decided &= known | ~(atr_at > 0)
        fill = fill + sign * amount
    decided &= fill > 0
    fill_stop = sign * (fill - stop) <= 0
    state = np.select(
        [~has_next, late | bad_open, gap_stop, gap_target, no_atr, ~decided, fill_stop],
        [
            Entry.NO_NEXT_BAR,
            Entry.SCALAR,
            Entry.GAP_STOP,
            Entry.GAP_TARGET,
            Entry.NO_ATR,
            Entry.SCALAR,
            Entry.FILL_STOP,
        ],
        Entry.FILL,
    )
    return CandidateColumns(fired, sign, valid, entry, stop, target, state.astype(np.int64), fill)


def _levels(
    values: FloatArray, long: BoolArray, when_long: str, when_short: str, valid: BoolArray, tick: Decimal, name: str
) -> IntArray:
    """The levels in ticks, rounded one way for longs and the other for shorts, exactly (the scalar path where the
    double cannot decide)."""
    up, up_known = quantize_units(values, tick, ROUND_CEILING)
    down, down_known = quantize_units(values, tick, ROUND_FLOOR)
    ceil_long = when_long == ROUND_CEILING
    units = np.where(long == ceil_long, up, down)
    known = np.where(long == ceil_long, up_known, down_known)
    for k in np.flatnonzero(valid & ~known).tolist():
        rounding = when_long if long[k] else when_short
        units[k] = int(quantize_float(float(values[k]), tick, rounding, name) / tick)
    return units


def _times_ratio_floor(units: IntArray, ratio: float, valid: BoolArray) -> IntArray:
    """floor(units x the ratio's shortest decimal), exactly."""
    num, den = to_decimal(ratio, "reward_risk").as_integer_ratio()
    limit = np.iinfo(np.int64).max // max(num, 1)
    if num < MAX_RATIO_TERM and den < MAX_RATIO_TERM and int(units.max(initial=0)) < limit:
        return (units * num) // den
    product = units * ratio
    floor = np.floor(product)
    decided = (product - floor > TIE) & (floor + 1 - product > TIE) & (product < MAX_FLOAT_TICKS)
    out = floor.astype(np.int64)
    for k in np.flatnonzero(valid & ~decided).tolist():
        out[k] = (int(units[k]) * num) // den
    return out


def _floats(units: IntArray, scale: float, divide: bool) -> FloatArray:
    """The doubles nearest whole ticks (one correctly rounded operation on exact doubles)."""
    as_float = units.astype(np.float64)
    return as_float / scale if divide else as_float * scale


def _fills(
    opened: FloatArray, long: BoolArray, tick: Decimal, spread: Decimal, costs: CostModel
) -> tuple[IntArray, BoolArray]:
    """Market fills in ticks at each open (buys at the ask, sells at the bid, then slippage), and where decided."""
    up, up_known = quantize_units(opened, tick, ROUND_CEILING)
    down, down_known = quantize_units(opened, tick, ROUND_FLOOR)
    if spread == 0:
        touched = np.where(long, up, np.maximum(down, 1))
        decided = np.where(long, up_known, down_known)
    else:
        half = Fraction(spread) / (2 * Fraction(tick))  # half the spread in ticks
        whole_ticks = math.ceil(half)
        on_grid = up_known & down_known & (up == down)  # the open is a whole tick: exact whatever the spread
        scale, divide = float_step(tick) or (1.0, True)
        with np.errstate(invalid="ignore"):
            mid = opened * scale if divide else opened / scale
            x = np.where(long, mid + float(half), mid - float(half))
            below = np.floor(x)
            clear = np.isfinite(x) & (np.abs(x) < MAX_FLOAT_TICKS) & (x - below > TIE) & (below + 1 - x > TIE)
            below = np.where(clear, below, 0.0).astype(np.int64)
        touched = np.where(
            on_grid,
            np.where(long, up + whole_ticks, np.maximum(down - whole_ticks, 1)),
            np.where(long, below + 1, np.maximum(below, 1)),
        )
        decided = on_grid | clear
    if not costs.slippage_bps:
        return touched, decided
    num, den = costs.slippage_bps.as_integer_ratio()
    whole = den * 10_000
    if whole + num >= MAX_SLIPPAGE_TERM:  # ticks below 2^36 times this stay within int64
        return touched, np.zeros(len(opened), dtype=bool)
    moved_up = -((-touched * (whole + num)) // whole)  # ceiling
    moved_down = (touched * (whole - num)) // whole
    return np.where(long, moved_up, moved_down), decided
