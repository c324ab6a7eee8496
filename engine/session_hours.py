"""NSE-aligned hourly bars: 09:15, 10:15, ..., 15:15 IST, the last one 15:15-15:30.

NSE's session (09:15-15:30 IST) does not start on the clock hour, so its hourly bars are not the UTC hour
bins other markets use. `nse_hours` builds them from 5-minute bars (spec `nifty-weekly-zones.md` §1):
regular Mon-Fri sessions whose first bar opens at 09:15 only (a Budget Saturday or a Muhurat evening is
dropped); a 5-minute bar opening at t belongs to hour floor((t - 09:15) / 60 min); O first open, H max, L min,
C last close; labelled by open time, closing at open + 60 min, or 15:30 for the last. `session_hours` reads
bars already built that way (a 1h CSV or a provider's aligned download) and checks the alignment.
IST is UTC+05:30 all year (no daylight saving), so plain offsets are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

import numpy as np

from engine.bars import Bars, IntArray, from_nanos
from engine.domain import Interval

IST_OFFSET_NS: Final = (5 * 3600 + 30 * 60) * 1_000_000_000
DAY_NS: Final = 86_400 * 1_000_000_000
MINUTE_NS: Final = 60 * 1_000_000_000
SESSION_OPEN_MIN: Final = 9 * 60 + 15  # 09:15 IST
SESSION_CLOSE_MIN: Final = 15 * 60 + 30  # 15:30 IST
HOURS_PER_DAY: Final = 7  # 09:15, 10:15, ..., 15:15
EPOCH: Final = date(1970, 1, 1)


@dataclass(frozen=True, slots=True, eq=False)
class SessionHours:
    """NSE-aligned hourly bars with each bar's true close time, IST trading day and hour of the session."""

    bars: Bars
    close_ns: IntArray  # open + 60 min, or 15:30 IST for the 15:15 bar
    day: IntArray  # IST date as days since 1970-01-01
    hour: IntArray  # 0 for 09:15 ... 6 for 15:15

    def __post_init__(self) -> None:
        if self.bars.interval is not Interval.H1:
            raise ValueError(f"session hours are 1h bars, were {self.bars.interval}")
        n = len(self.bars)
        for name in ("close_ns", "day", "hour"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} values, expected {n} like the bars")

    def __len__(self) -> int:
        return len(self.bars)

    def close_time(self, i: int) -> datetime:
        return from_nanos(int(self.close_ns[i]))

    def date_of(self, i: int) -> date:
        return EPOCH + timedelta(days=int(self.day[i]))


def ist_day_and_minute(time_ns: IntArray) -> tuple[IntArray, IntArray]:
    """IST date (days since 1970-01-01) and minute of day of UTC nanosecond times."""
    local = time_ns + IST_OFFSET_NS
    return local // DAY_NS, (local % DAY_NS) // MINUTE_NS


def nse_hours(five: Bars) -> SessionHours:
    """Build §1's hourly bars from 5-minute bars (or finer): regular weekday sessions opening at 09:15 only."""
    if five.interval.delta > timedelta(minutes=5):
        raise ValueError(f"NSE hourly bars are built from 5-minute bars or finer, not {five.interval}")
    day, minute = ist_day_and_minute(five.time)
    in_session = (minute >= SESSION_OPEN_MIN) & (minute < SESSION_CLOSE_MIN)
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]]) if len(day) else np.empty(0, np.int64)
    runs = np.diff(np.r_[starts, len(day)])
    regular = np.repeat(minute[starts] == SESSION_OPEN_MIN, runs)  # the day's first bar opens 09:15
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
    keep = np.flatnonzero(in_session & (weekday < 5) & regular)
    if len(keep) == 0:
        empty = np.empty(0, np.int64)
        nothing = np.empty(0)
        return SessionHours(Bars(Interval.H1, empty, nothing, nothing, nothing, nothing, nothing), empty, empty, empty)
    d, m = day[keep], minute[keep]
    hour = (m - SESSION_OPEN_MIN) // 60
    key = d * HOURS_PER_DAY + hour
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    last = np.r_[first[1:], len(keep)] - 1
    opens_ns = (d[first] * DAY_NS - IST_OFFSET_NS) + (SESSION_OPEN_MIN + 60 * hour[first]) * MINUTE_NS
    session_close_ns = d[first] * DAY_NS - IST_OFFSET_NS + SESSION_CLOSE_MIN * MINUTE_NS
    bars = Bars(
        Interval.H1,
        opens_ns.astype(np.int64),
        five.open[keep][first],
        np.maximum.reduceat(five.high[keep], first),
        np.minimum.reduceat(five.low[keep], first),
        five.close[keep][last],
        np.add.reduceat(five.volume[keep], first),
    )
    close_ns = np.minimum(opens_ns + 60 * MINUTE_NS, session_close_ns).astype(np.int64)
    return SessionHours(bars, close_ns, d[first].astype(np.int64), hour[first].astype(np.int64))


def session_hours(hourly: Bars) -> SessionHours:
    """Wrap 1h bars already on the NSE grid (09:15 ... 15:15 IST), or say which bar is off it."""
    if hourly.interval is not Interval.H1:
        raise ValueError(f"NSE session hours are 1h bars, were {hourly.interval}")
    day, minute = ist_day_and_minute(hourly.time)
    offset = minute - SESSION_OPEN_MIN
    off_grid = np.flatnonzero((offset < 0) | (offset % 60 != 0) | (offset // 60 >= HOURS_PER_DAY))
    if len(off_grid):
        at = from_nanos(int(hourly.time[off_grid[0]]))
        raise ValueError(
            f"hourly bar at {at:%Y-%m-%d %H:%M}Z is not on the NSE grid (09:15, 10:15, ..., 15:15 IST); "
            "build NSE hours from 5-minute bars"
        )
    hour = offset // 60
    opens = hourly.time
    session_close = day * DAY_NS - IST_OFFSET_NS + SESSION_CLOSE_MIN * MINUTE_NS
    close_ns = np.minimum(opens + 60 * MINUTE_NS, session_close).astype(np.int64)
    return SessionHours(hourly, close_ns, day.astype(np.int64), hour.astype(np.int64))
