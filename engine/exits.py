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
from enum import StrEnum
from typing import Final

import numpy as np

from engine.bars import Bars, FloatArray, IntArray, from_nanos, to_nanos
from engine.domain import Side, ensure_utc
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
