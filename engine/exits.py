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
* Time exit: a position is held at most `max_bars` bars (`start` is the first); if nothing was hit, it
  exits at the close of bar `start + max_bars - 1`, reason TIME.
* Session end: with `session_day` given the position is intraday and exits at the close of the last bar of
  the session of bar `start`, reason SESSION_END. That bar is known to be the last only once a bar of a
  later session exists; until then the position is still open (a live monitor closes at the bell itself).
  When the time and the session exit fall on the same bar, SESSION_END is reported.

An exit is reported at the CLOSE time of its bar: the moment a bar-based monitor learns of it. Prices are
floats here (the numpy kernel); the caller converts them to Decimal ticks and adds costs at its boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from engine.bars import Bars, IntArray, from_nanos
from engine.domain import Side, ensure_utc
from engine.trading import ExitReason


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


def find_exit(
    bars: Bars,
    start: int,
    side: Side,
    stop: float,
    target: float,
    *,
    max_bars: int | None = None,
    session_day: IntArray | None = None,
) -> ExitEvent | None:
    """Return the first exit from bar `start` on, or None while the position is still open."""
    n = len(bars)
    _check_arguments(n, start, side, stop, target, max_bars, session_day)
    end = n - 1  # last bar searched, inclusive
    timed: tuple[int, ExitReason] | None = None
    if max_bars is not None and start + max_bars - 1 <= end:
        end = start + max_bars - 1
        timed = (end, ExitReason.TIME)
    if session_day is not None and start < n:
        later = np.flatnonzero(session_day[start:] != session_day[start])
        if len(later):
            last_of_session = start + int(later[0]) - 1
            if last_of_session <= end:
                end = last_of_session
                timed = (end, ExitReason.SESSION_END)
    if start > end:
        return None

    window = slice(start, end + 1)
    opens, highs, lows = bars.open[window], bars.high[window], bars.low[window]
    if side is Side.LONG:
        gap_stop, gap_target = opens <= stop, opens >= target
        stop_hit, target_hit = lows <= stop, highs >= target
    else:
        gap_stop, gap_target = opens >= stop, opens <= target
        stop_hit, target_hit = highs >= stop, lows <= target
    hit = stop_hit | target_hit
    if bool(hit.any()):
        k = int(np.argmax(hit))
        index = start + k
        at = from_nanos(int(bars.close_time[index]))
        if gap_stop[k] or gap_target[k]:  # the open came first: the level it gapped through filled there
            reason = ExitReason.STOP if gap_stop[k] else ExitReason.TARGET
            return ExitEvent(index, at, float(opens[k]), reason)
        if stop_hit[k]:  # also when the target was touched in the same bar: assume the worse
            return ExitEvent(index, at, float(stop), ExitReason.STOP)
        return ExitEvent(index, at, float(target), ExitReason.TARGET)
    if timed is None:
        return None
    index, reason = timed
    return ExitEvent(index, from_nanos(int(bars.close_time[index])), float(bars.close[index]), reason)


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
