"""Market session calendars: when an instrument trades, in its exchange's local time.

A session belongs to a local *trading date* D and runs from `D + open_offset` to `D + close_offset` in the
calendar's timezone. The offsets may leave the day: FX trades from 17:00 New York on D-1 to 17:00 on D.
Daylight saving is handled by zoneinfo. Holidays are optional dates on which no session runs; fuller
exchange calendars (half days, special closures) plug in behind the same interface later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from engine.bars import IntArray
from engine.domain import ensure_utc

_DAY_NS = 86_400 * 1_000_000_000
_MINUTE_NS = 60 * 1_000_000_000
_MAX_LOOKBACK_DAYS = 15


@dataclass(frozen=True, slots=True)
class SessionCalendar:
    """Weekly trading sessions of one market, in its local timezone."""

    name: str
    timezone: str
    open_offset: timedelta
    close_offset: timedelta
    weekdays: frozenset[int] = frozenset(range(5))
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.close_offset <= self.open_offset:
            raise ValueError(f"calendar {self.name}: close_offset must be after open_offset")
        if self.close_offset - self.open_offset > timedelta(days=1):
            raise ValueError(f"calendar {self.name}: a session must not last more than a day")
        if not self.weekdays <= set(range(7)):
            raise ValueError(f"calendar {self.name}: weekdays must be within 0 (Mon)..6 (Sun)")
        ZoneInfo(self.timezone)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def open_minute(self) -> int:
        """Local minute of day at which the session opens (may be relative to the previous day)."""
        return int(self.open_offset.total_seconds() // 60)

    @property
    def session_minutes(self) -> int:
        return int((self.close_offset - self.open_offset).total_seconds() // 60)

    def is_trading_day(self, day: date) -> bool:
        return day.weekday() in self.weekdays and day not in self.holidays

    def session(self, day: date) -> tuple[datetime, datetime] | None:
        """UTC open and close of the session of trading date `day`, or None if it does not trade."""
        if not self.is_trading_day(day):
            return None
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.zone)
        # Offsets are wall-clock: add them to the naive local midnight, then attach the zone.
        opened = (midnight.replace(tzinfo=None) + self.open_offset).replace(tzinfo=self.zone)
        closed = (midnight.replace(tzinfo=None) + self.close_offset).replace(tzinfo=self.zone)
        return opened.astimezone(UTC), closed.astimezone(UTC)

    def trading_date(self, ts: datetime) -> date:
        """The trading date whose session window contains or precedes `ts`."""
        local = ensure_utc(ts, "ts").astimezone(self.zone).replace(tzinfo=None)
        return (local - self.open_offset).date()

    def is_open(self, ts: datetime) -> bool:
        day = self.trading_date(ts)
        bounds = self.session(day)
        return bounds is not None and bounds[0] <= ts < bounds[1]

    def last_open_at_or_before(self, ts: datetime) -> datetime | None:
        """`ts` itself while the market is open, else the close of the latest session before `ts`."""
        ensure_utc(ts, "ts")
        day = self.trading_date(ts)
        for back in range(_MAX_LOOKBACK_DAYS):
            bounds = self.session(day - timedelta(days=back))
            if bounds is None or bounds[0] > ts:
                continue
            return ts if ts < bounds[1] else bounds[1]
        return None

    def open_duration(self, start: datetime, end: datetime) -> timedelta:
        """Time the market is open between `start` and `end`; beyond the lookback, the plain elapsed time."""
        ensure_utc(start, "start")
        ensure_utc(end, "end")
        if end <= start:
            return timedelta(0)
        if end - start > timedelta(days=_MAX_LOOKBACK_DAYS):
            return end - start
        total = timedelta(0)
        day, last = self.trading_date(start), self.trading_date(end)
        while day <= last:
            bounds = self.session(day)
            if bounds is not None:
                overlap = min(end, bounds[1]) - max(start, bounds[0])
                total += max(overlap, timedelta(0))
            day += timedelta(days=1)
        return total

    def local_nanos(self, times: IntArray) -> IntArray:
        """Local wall-clock time of UTC instants, as nanoseconds of a naive clock."""
        return local_nanos(times, self.timezone)

    def session_day(self, times: IntArray) -> IntArray:
        """Trading-date id (days since the epoch) for each UTC instant."""
        return (self.local_nanos(times) - _to_ns(self.open_offset)) // _DAY_NS

    def minutes_from_open(self, times: IntArray) -> IntArray:
        """Minutes since that trading date's session open, for each UTC instant."""
        return ((self.local_nanos(times) - _to_ns(self.open_offset)) % _DAY_NS) // _MINUTE_NS

    def local_minute_of_day(self, times: IntArray) -> IntArray:
        """Local wall-clock minute of day (0..1439) for each UTC instant."""
        return (self.local_nanos(times) % _DAY_NS) // _MINUTE_NS

    def with_holidays(self, holidays: frozenset[date]) -> SessionCalendar:
        return SessionCalendar(self.name, self.timezone, self.open_offset, self.close_offset, self.weekdays, holidays)


_TABLE_START_NS = 631_152_000 * 1_000_000_000  # 1990-01-01T00:00Z
_TABLE_END_NS = 2_871_763_200 * 1_000_000_000  # 2061-01-01T00:00Z
_QUARTER_HOUR_NS = 15 * _MINUTE_NS


def _utc_offsets_slow(times: IntArray, timezone: str) -> IntArray:
    index = pd.DatetimeIndex(np.asarray(times, dtype=np.int64).view("M8[ns]")).tz_localize("UTC").tz_convert(timezone)
    return index.tz_localize(None).as_unit("ns").asi8.astype(np.int64) - times


@lru_cache(maxsize=64)
def _offset_table(timezone: str) -> tuple[IntArray, IntArray]:
    """UTC instants at which `timezone`'s offset changes (1990-2060) and the offset from each on."""
    days = np.arange(_TABLE_START_NS, _TABLE_END_NS, _DAY_NS, dtype=np.int64)
    daily = _utc_offsets_slow(days, timezone)
    starts, offsets = [_TABLE_START_NS], [int(daily[0])]
    for k in np.flatnonzero(daily[1:] != daily[:-1]).tolist():
        # The change happened during day k; find its quarter hour (all real transitions fall on one).
        steps = days[k] + np.arange(0, _DAY_NS + 1, _QUARTER_HOUR_NS, dtype=np.int64)
        within = _utc_offsets_slow(steps, timezone)
        first = int(np.flatnonzero(within != within[0])[0])
        starts.append(int(steps[first]))
        offsets.append(int(within[first]))
    return np.array(starts, dtype=np.int64), np.array(offsets, dtype=np.int64)


def local_nanos(times: IntArray, timezone: str) -> IntArray:
    """Local wall-clock time of UTC instants (ns), via a cached table of the zone's offset changes."""
    times = np.asarray(times, dtype=np.int64)
    if len(times) == 0:
        return times.copy()
    if times.min() < _TABLE_START_NS or times.max() >= _TABLE_END_NS:
        return times + _utc_offsets_slow(times, timezone)
    starts, offsets = _offset_table(timezone)
    return times + offsets[np.searchsorted(starts, times, side="right") - 1]


def _to_ns(delta: timedelta) -> int:
    return int(delta.total_seconds()) * 1_000_000_000


def _hm(hours: int, minutes: int = 0) -> timedelta:
    return timedelta(hours=hours, minutes=minutes)


BUILTIN_CALENDARS: dict[str, SessionCalendar] = {
    "XNSE": SessionCalendar("XNSE", "Asia/Kolkata", _hm(9, 15), _hm(15, 30)),
    "XNYS": SessionCalendar("XNYS", "America/New_York", _hm(9, 30), _hm(16)),
    # FX and spot metals: Sunday 17:00 New York to Friday 17:00 New York, trading date = the day it ends.
    "FX": SessionCalendar("FX", "America/New_York", _hm(-7), _hm(17)),
    "CRYPTO": SessionCalendar("CRYPTO", "UTC", _hm(0), _hm(24), frozenset(range(7))),
}


def get_calendar(name: str) -> SessionCalendar:
    """Look up a built-in calendar by name, naming the known ones when it is missing."""
    try:
        return BUILTIN_CALENDARS[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_CALENDARS))
        raise ValueError(f"unknown market calendar {name!r}; known calendars: {known}") from None
