"""The exit search: where a position opened at a stop and a target first leaves the market, bar by bar.

Shared by live position monitoring and the backtester, so both judge an exit the same way. Rules:

* Only bars from `start` on are searched; the caller passes the first bar that OPENED at or after the
  entry, because a bar in progress at entry mixes pre-entry prices.
* A long is stopped when a bar's low reaches the stop and hits its target when the high reaches the target;
  a short mirrors this (high reaches the stop, low reaches the target). Touching a level counts.
* When one bar touches both levels we cannot know which came first inside the bar, so we assume the worse:
  the stop. The one order we do know is the open: a bar that OPENS beyond a level reached it first.
* Gaps: a bar opening beyond the stop fills at the open (worse than the stop); a bar opening beyond the
  target fills at the open (a resting limit fills at the better price). Otherwise the fill is the level.
* Close-only stops (`StopTrigger.CLOSE`, for systems whose rules check the stop on bar closes only): the stop
  fires when a bar CLOSES at or beyond it, filled at that close; highs, lows and opens never stop. The
  target still fills on a touch, and wins a bar whose close is beyond the stop (it was reached before the
  close that decided the stop).
* Time exit: a position is held at most `max_bars` bars (`start` is the first); if nothing was hit, it
  exits at the close of bar `start + max_bars - 1`, reason TIME.
* Session end: with `session_day` given the position is intraday and exits at the close of the last bar of
  the session of bar `start`, reason SESSION_END. Callers pass `SessionCalendar.exit_session`, which starts a
  new session at the calendar's flat time or (early) close and at every bar after it, so that bar is the last
  one starting before it (NSE 5m: the 15:10 bar, flat at 15:15), or bar `start` itself when it starts later.
  That bar is known to be the last only once a bar of a later session exists; until then the position is
  still open (a live monitor closes at the bell itself).
  When the time and the session exit fall on the same bar, SESSION_END is reported.

An exit is reported at the CLOSE time of its bar: the moment a bar-based monitor learns of it. Prices are
floats here (the numpy kernel); the caller converts them to Decimal ticks and adds costs at its boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Final

import numpy as np

from engine.bars import Bars, FloatArray, IntArray, from_nanos, to_nanos
from engine.costs import CostModel, commission, exit_fill_price
from engine.domain import Instrument, Side, ensure_utc
from engine.trading import ExitReason


class StopTrigger(StrEnum):
    """What fires a stop: any touch of the level inside a bar, or only a bar's close beyond it."""

    TOUCH = "touch"
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class ExitEvent:
    """Where and why a position left the market: bar index, the bar's close time, the fill level, reason."""

    bar_index: int
    at: datetime
    price: float
    reason: ExitReason

    def __post_init__(self) -> None:
        ensure_utc(self.at, "exit time")
        if self.bar_index < 0:
            raise ValueError(f"exit bar index must be non-negative, was {self.bar_index}")
        if not math.isfinite(self.price) or self.price <= 0:
            raise ValueError(f"exit price must be a positive finite number, was {self.price}")


FIRST_CHUNK: Final = 64  # bars compared at once before the window doubles: short trades touch few bars


def find_exit(
    bars: Bars,
    start: int,
    side: Side,
    stop: float,
    target: float,
    *,
    max_bars: int | None = None,
    session_day: IntArray | None = None,
    stop_trigger: StopTrigger = StopTrigger.TOUCH,
) -> ExitEvent | None:
    """Return the first exit from bar `start` on, or None while the position is still open."""
    _check_arguments(len(bars), start, side, stop, target, max_bars, session_day)
    arrays = (bars.open, bars.high, bars.low, bars.close)
    found = scan_exit(
        *arrays, start, side, stop, target, max_bars=max_bars, session_day=session_day, stop_trigger=stop_trigger
    )
    if found is None:
        return None
    index, price, reason = found
    return ExitEvent(index, from_nanos(int(bars.time[index]) + bars.interval.nanos), price, reason)


def find_exit_with_stops(
    bars: Bars,
    start: int,
    side: Side,
    stops: Sequence[tuple[datetime | None, float]],
    target: float,
    *,
    max_bars: int | None = None,
    session_day: IntArray | None = None,
    stop_trigger: StopTrigger = StopTrigger.TOUCH,
) -> ExitEvent | None:
    """The first exit from bar `start` of a position whose stop was moved: `stops` holds its first stop (time
    None) and each later one with the time it was set. Each stop watches the bars that opened from its time on;
    a bar in progress at a move is watched with the stop it opened under, so no bar closes a position on a level
    set after it."""
    if not stops or stops[0][0] is not None:
        raise ValueError("stops must begin with the position's first stop, whose time is None")
    bounds = [start]
    for at, _ in stops[1:]:
        assert at is not None
        bounds.append(max(start, int(np.searchsorted(bars.time, to_nanos(at), side="left"))))
    bounds.append(len(bars))
    for k, (_, stop) in enumerate(stops):
        lo, hi = bounds[k], bounds[k + 1]
        if lo >= hi:
            continue
        left = None if max_bars is None else max_bars - (lo - start)
        bounded = k < len(stops) - 1 and (left is None or hi - lo < left)  # ends at the next move, not the hold
        hold = hi - lo if bounded else left
        event = find_exit(
            bars, lo, side, stop, target, max_bars=hold, session_day=session_day, stop_trigger=stop_trigger
        )
        if event is None:
            return None
        if not (bounded and event.reason is ExitReason.TIME):  # else: the end of this stop's bars; go on
            return event
    return None


def scan_exit(
    opens: FloatArray,
    highs: FloatArray,
    lows: FloatArray,
    closes: FloatArray,
    start: int,
    side: Side,
    stop: float,
    target: float,
    *,
    max_bars: int | None = None,
    session_day: IntArray | None = None,
    stop_trigger: StopTrigger = StopTrigger.TOUCH,
) -> tuple[int, float, ExitReason] | None:
    """The kernel of `find_exit` on raw arrays (arguments unchecked): (bar index, fill level, reason) or None.

    Compares bars in windows that double from `FIRST_CHUNK`, so a trade that exits after k bars costs
    O(k) work, not O(bars left in the history).
    """
    n = len(opens)
    end = n - 1  # last bar that may still be searched, inclusive
    timed: ExitReason | None = None
    if max_bars is not None and start + max_bars - 1 <= end:
        end, timed = start + max_bars - 1, ExitReason.TIME
    day = None if session_day is None or start >= n else session_day[start]
    long = side is Side.LONG
    on_close = stop_trigger is StopTrigger.CLOSE
    lo, size = start, FIRST_CHUNK
    while lo <= end:
        hi = min(lo + size, end + 1)
        if session_day is not None:
            changed = np.flatnonzero(session_day[lo : hi + 1] != day)  # one bar more: the next session's first
            if len(changed) and lo + int(changed[0]) - 1 <= end:  # the session's last bar is known now
                end, timed = lo + int(changed[0]) - 1, ExitReason.SESSION_END
                hi = end + 1
        lows_, highs_ = lows[lo:hi], highs[lo:hi]
        stop_side = closes[lo:hi] if on_close else (lows_ if long else highs_)
        stop_hit = stop_side <= stop if long else stop_side >= stop
        target_hit = highs_ >= target if long else lows_ <= target
        hit = stop_hit | target_hit
        k = int(hit.argmax()) if len(hit) else 0
        if len(hit) and hit[k]:
            index = lo + k
            opened = float(opens[index])
            gapped_target = (opened >= target) if long else (opened <= target)
            if on_close:  # the close decides the stop at the end of the bar: a touched target came first
                if target_hit[k]:
                    return index, opened if gapped_target else float(target), ExitReason.TARGET
                return index, float(closes[index]), ExitReason.STOP
            if (opened <= stop) if long else (opened >= stop):  # the open came first: gapped through the stop
                return index, opened, ExitReason.STOP
            if gapped_target:
                return index, opened, ExitReason.TARGET
            if stop_hit[k]:  # also when the target was touched in the same bar: assume the worse
                return index, float(stop), ExitReason.STOP
            return index, float(target), ExitReason.TARGET
        lo, size = hi, size * 2
    if timed is None:
        return None
    return end, float(closes[end]), timed


def _check_arguments(
    n: int,
    start: int,
    side: Side,
    stop: float,
    target: float,
    max_bars: int | None,
    session_day: IntArray | None,
) -> None:
    if not 0 <= start <= n:
        raise ValueError(f"start must be within 0..{n} (the number of bars), was {start}")
    if not (math.isfinite(stop) and math.isfinite(target)) or stop <= 0 or target <= 0:
        raise ValueError(f"stop and target must be positive finite prices, were {stop} and {target}")
    if side is Side.LONG and not stop < target:
        raise ValueError(f"a long's stop must be below its target, was stop {stop} target {target}")
    if side is Side.SHORT and not stop > target:
        raise ValueError(f"a short's stop must be above its target, was stop {stop} target {target}")
    if max_bars is not None and max_bars < 1:
        raise ValueError(f"max_bars must be at least 1, was {max_bars}")
    if session_day is not None and len(session_day) != n:
        raise ValueError(f"session_day has {len(session_day)} values, expected {n} like the bars")


class TrailBy(StrEnum):
    """How far a trailing stop follows the best price: a multiple of the entry's risk, or of the bar's ATR."""

    R = "r"
    ATR = "atr"


@dataclass(frozen=True, slots=True)
class ExitPlan:
    """Trade management on top of the stop and target: breakeven, a trailing stop and partial targets.

    * `breakeven_r`: once the best price since entry is `breakeven_r` R in profit, the stop moves to the entry.
    * `trail_by`/`trail_distance`/`trail_after_r`: once `trail_after_r` R in profit, the stop follows the best
      price at `trail_distance` R (or ATRs of the last closed bar); it never moves back.
    * `partials`: (R, fraction of the original quantity) pairs: that fraction is sold at entry + R x risk; the
      rest runs to the final target, the (moved) stop or the time exit.

    The moves are decided at a bar's close and act from the next bar, so no bar is judged with a level set after
    it. One plan serves the backtester, the replay and the live monitor.
    """

    breakeven_r: float | None = None
    trail_by: TrailBy | None = None
    trail_distance: float = 1.0
    trail_after_r: float = 1.0
    partials: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.breakeven_r is not None and not (math.isfinite(self.breakeven_r) and self.breakeven_r > 0):
            raise ValueError(f"breakeven_r must be a positive number of R, was {self.breakeven_r}")
        if not (math.isfinite(self.trail_distance) and self.trail_distance > 0):
            raise ValueError(f"trail_distance must be positive, was {self.trail_distance}")
        if not (math.isfinite(self.trail_after_r) and self.trail_after_r >= 0):
            raise ValueError(f"trail_after_r must be zero or more R, was {self.trail_after_r}")
        levels = [r for r, _ in self.partials]
        if levels != sorted(set(levels)) or any(not (math.isfinite(r) and r > 0) for r in levels):
            raise ValueError(f"partial targets must be distinct positive R levels in rising order, were {levels}")
        fractions = [f for _, f in self.partials]
        if any(not 0 < f < 1 for f in fractions) or sum(fractions) >= 1:
            raise ValueError(
                f"partial fractions must each be in (0, 1) and leave some of the position, were {fractions}"
            )

    @property
    def active(self) -> bool:
        return self.breakeven_r is not None or self.trail_by is not None or bool(self.partials)


@dataclass(frozen=True, slots=True)
class ExitLeg:
    """Part of a position leaving the market: bar index, fill level, fraction of the original quantity, reason."""

    bar_index: int
    price: float
    fraction: float
    reason: ExitReason


@dataclass(frozen=True, slots=True)
class ManagedExit:
    """What a plan did to a position so far: its exit legs, its stop moves (effective bar, new stop), and whether
    the whole position is out."""

    legs: tuple[ExitLeg, ...]
    stop_moves: tuple[tuple[int, float], ...]
    done: bool

    @property
    def stop(self) -> float | None:
        """The stop in force now (after the last move), or None when it never moved."""
        return self.stop_moves[-1][1] if self.stop_moves else None

    def r_multiple(self, side: Side, entry: float, risk: float) -> float:
        """The legs' gross R, weighted by their fractions (all legs together when `done`)."""
        return sum(leg.fraction * side.sign * (leg.price - entry) / risk for leg in self.legs)


def manage_exit(
    opens: FloatArray,
    highs: FloatArray,
    lows: FloatArray,
    closes: FloatArray,
    start: int,
    side: Side,
    entry: float,
    stop: float,
    target: float,
    plan: ExitPlan,
    *,
    atr: FloatArray | None = None,
    max_bars: int | None = None,
    session_day: IntArray | None = None,
    set_stops: Sequence[tuple[int, float]] = (),
) -> ManagedExit:
    """Walk a managed position bar by bar from `start` (loop over this trade's bars: its stop depends on its path).

    Within a bar the rules of `scan_exit` hold: a gap beyond a level fills at the open; a bar touching the stop
    and a target takes the stop (the worse); partial targets fill at their levels in order, then the final target.
    A time or session exit closes the rest at that bar's close. After each bar the best price updates the stop
    for the next bar (breakeven, trailing). `entry` is the position's fill price; R is `abs(entry - stop)`.
    `set_stops` (bar index, stop): stops the trader set, in force from that bar when better than the plan's.
    """
    sign = side.sign
    risk = abs(entry - stop)
    if risk <= 0 or not math.isfinite(risk):
        raise ValueError(f"a managed position needs a positive risk, entry {entry} stop {stop}")
    if plan.trail_by is TrailBy.ATR and atr is None:
        raise ValueError("a trailing stop by ATR needs the ATR of the bars")
    n = len(opens)
    end = n - 1
    timed: ExitReason | None = None
    if max_bars is not None and start + max_bars - 1 <= end:
        end, timed = start + max_bars - 1, ExitReason.TIME
    day = None if session_day is None or start >= n else session_day[start]
    levels = [(entry + sign * r * risk, f) for r, f in plan.partials]
    left = 1.0
    legs: list[ExitLeg] = []
    moves: list[tuple[int, float]] = []
    current, best, moved = stop, entry, False
    k = start
    while k <= end:
        if day is not None and session_day is not None and k + 1 < n and session_day[k + 1] != day:
            end, timed = k, ExitReason.SESSION_END  # this is the session's last bar: a later session's bar exists
        for at, level in set_stops:
            if at <= k and sign * (level - current) > 0:
                current, moved = level, True
        o, h, lo, c = float(opens[k]), float(highs[k]), float(lows[k]), float(closes[k])
        stop_reason = ExitReason.TRAILING_STOP if moved else ExitReason.STOP
        if sign * (o - current) <= 0:  # opened beyond the stop
            legs.append(ExitLeg(k, o, left, stop_reason))
            return ManagedExit(tuple(legs), tuple(moves), True)
        if sign * ((lo if sign > 0 else h) - current) <= 0:  # touched the stop: taken first, the worse case
            legs.append(ExitLeg(k, current, left, stop_reason))
            return ManagedExit(tuple(legs), tuple(moves), True)
        reach = h if sign > 0 else lo
        while levels and sign * (reach - levels[0][0]) >= 0:
            level, fraction = levels.pop(0)
            fill = o if sign * (o - level) >= 0 else level
            legs.append(ExitLeg(k, fill, fraction, ExitReason.PARTIAL))
            left -= fraction
        if sign * (reach - target) >= 0:
            legs.append(ExitLeg(k, o if sign * (o - target) >= 0 else target, left, ExitReason.TARGET))
            return ManagedExit(tuple(legs), tuple(moves), True)
        if k == end and timed is not None:
            legs.append(ExitLeg(k, c, left, timed))
            return ManagedExit(tuple(legs), tuple(moves), True)
        best = max(best, reach) if sign > 0 else min(best, reach)
        gained = sign * (best - entry) / risk
        candidate = current
        if plan.breakeven_r is not None and gained >= plan.breakeven_r:
            candidate = entry if sign * (entry - candidate) > 0 else candidate
        if plan.trail_by is not None and gained >= plan.trail_after_r:
            distance = plan.trail_distance * (risk if plan.trail_by is TrailBy.R else float(atr[k]))  # type: ignore[index]
            if math.isfinite(distance) and distance > 0:
                trailed = best - sign * distance
                candidate = trailed if sign * (trailed - candidate) > 0 else candidate
        if sign * (candidate - current) > 0:  # acts from the next bar on
            current, moved = candidate, True
            moves.append((k + 1, current))
        k += 1
    return ManagedExit(tuple(legs), tuple(moves), False)


TRAIL_ATR_PERIOD: Final = 14  # the ATR a trailing stop by ATR measures its distance with
AVERAGE_PLACES: Final = Decimal("1E-12")  # a partly closed position's average exit price is kept to 12 places


def leg_quantities(quantity: Decimal, legs: Sequence[ExitLeg], lot: Decimal) -> list[Decimal]:
    """Each leg's quantity in whole lots (a partial's share rounded down; the last leg takes what is left)."""
    sizes: list[Decimal] = []
    left = quantity
    for leg in legs[:-1]:
        size = min((quantity * Decimal(repr(leg.fraction)) / lot).to_integral_value(ROUND_FLOOR) * lot, left)
        sizes.append(size)
        left -= size
    return [*sizes, left]


@dataclass(frozen=True, slots=True)
class LegFill:
    """One exit leg priced as a fill: its quantity in whole lots, its fill with spread and slippage, its fees."""

    leg: ExitLeg
    quantity: Decimal
    price: Decimal
    fees: Decimal


def leg_fills(
    legs: Sequence[ExitLeg], quantity: Decimal, side: Side, instrument: Instrument, costs: CostModel
) -> list[LegFill]:
    """The legs as fills, the one pricing the backtester and the live monitor share. A leg too small for a whole
    lot is left out (its share stays on in the later legs)."""
    if not legs:
        return []
    fills = []
    for leg, size in zip(legs, leg_quantities(quantity, legs, instrument.lot_size), strict=True):
        if size <= 0:
            continue
        fill = exit_fill_price(instrument.price(leg.price, ROUND_HALF_EVEN), side, costs, instrument)
        fills.append(LegFill(leg, size, fill, commission(fill, size, instrument, costs)))
    return fills


def managed_fill(
    managed: ManagedExit, quantity: Decimal, side: Side, instrument: Instrument, costs: CostModel, at: datetime
) -> tuple[datetime, Decimal, ExitReason, Decimal]:
    """A finished managed position as one exit: (time, quantity-weighted average fill, final reason, total fees).

    Each leg fills at its level with spread and slippage and pays its own commission, so the trade's P&L and R
    are those of its partial fills together.
    """
    if not managed.done:
        raise ValueError("only a finished managed position has an exit")
    fills = leg_fills(managed.legs, quantity, side, instrument, costs)
    value = sum((f.price * f.quantity for f in fills), Decimal(0))
    average = (value / quantity).quantize(AVERAGE_PLACES, ROUND_HALF_EVEN)
    return at, average, managed.legs[-1].reason, sum((f.fees for f in fills), Decimal(0))
