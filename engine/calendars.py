"""Market session calendars: when an instrument trades, in its exchange's local time, and when not to enter.

A session belongs to a local *trading date* D and runs from `D + open_offset` to `D + close_offset` in the
calendar's timezone. The offsets may leave the day: FX trades from 17:00 New York on D-1 to 17:00 on D.
Daylight saving is handled by zoneinfo. Holidays are dates without a session; early closes are dates whose
session ends earlier (a wall-clock offset from local midnight). `holidays_known_until` is the last date the
holiday data covers (None: the rules are complete, as for FX and crypto); `calendar_warnings` says when it
runs out. The built-in calendars below carry the weekly rules only; `data.market.calendars` fills XNSE and
XNYS with holidays and early closes from the exchange_calendars library.

Entry rules (`entry_block`), judged while the market is open (at the close itself or later an order waits
for the next open, and `engine.pipeline`'s staleness rule judges the setup), with these built-in defaults:

* `entry_cutoff`: no new entries in the last N minutes before a close that is followed by a closed market
  (the next session opens later than this close). Exchanges (XNSE, XNYS: 15 min) block before every close,
  early closes included; FX (15 min) only before its weekly close, Friday 17:00 New York, and before
  holidays; CRYPTO (0) never, its sessions run back to back.
* `flat_at`: the local wall-clock time (offset from local midnight of the trading date) by which intraday
  positions are flat; on an early-close day the earlier of it and the close applies. XNSE: 15:15; the others
  None (the session's last bar). No entries from that time to the close. `exit_session` gives the bars
  that start at or after it session ids of their own, so the exit search closes an intraday position at
  the close of the last bar that starts before it (NSE 5m: the 15:10 bar, flat at 15:15), and one entered
  just before it at the close of its first bar.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np

from engine.bars import IntArray, to_nanos
from engine.domain import Interval, ensure_utc

_DAY_NS = 86_400 * 1_000_000_000
_MINUTE_NS = 60 * 1_000_000_000
_MAX_LOOKBACK_DAYS = 15
HOLIDAY_WARNING_DAYS: Final = 45
_MAX_MEMO_SESSIONS: Final = 20_000  # sessions a calendar remembers (decades of trading dates)
_EPOCH_DATE: Final = date(1970, 1, 1)
_NEVER_NS: Final = int(np.iinfo(np.int64).max)
_EXIT_IDS_PER_DAY = 2048  # the trading date's id, then one per minute of the day after the flat time


@dataclass(frozen=True, slots=True)
class SessionCalendar:
    """Weekly trading sessions of one market, in its local timezone, with its holidays and entry rules."""

    name: str
    timezone: str
    open_offset: timedelta
    close_offset: timedelta
    weekdays: frozenset[int] = frozenset(range(5))
    holidays: frozenset[date] = field(default_factory=frozenset)
    early_closes: frozenset[tuple[date, timedelta]] = field(default_factory=frozenset)
    holidays_known_until: date | None = None
    entry_cutoff: timedelta = timedelta(0)
    flat_at: timedelta | None = None
    _early: dict[date, timedelta] = field(init=False, repr=False, compare=False, hash=False)
    _sessions: dict[date, tuple[datetime, datetime] | None] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.close_offset <= self.open_offset:
            raise ValueError(f"calendar {self.name}: close_offset must be after open_offset")
        if self.close_offset - self.open_offset > timedelta(days=1):
            raise ValueError(f"calendar {self.name}: a session must not last more than a day")
        if not self.weekdays <= set(range(7)):
            raise ValueError(f"calendar {self.name}: weekdays must be within 0 (Mon)..6 (Sun)")
        ZoneInfo(self.timezone)
        early = dict(self.early_closes)
        if len(early) != len(self.early_closes):
            raise ValueError(f"calendar {self.name}: a date may have only one early close")
        for day, offset in sorted(early.items()):
            if not self.open_offset < offset < self.close_offset:
                raise ValueError(
                    f"calendar {self.name}: the early close on {day} at {clock_text(offset)} must fall inside the "
                    f"regular session ({clock_text(self.open_offset)}-{clock_text(self.close_offset)})"
                )
        if not timedelta(0) <= self.entry_cutoff < self.close_offset - self.open_offset:
            raise ValueError(
                f"calendar {self.name}: entry_cutoff must be at least 0 and shorter than the session "
                f"({self.session_minutes} min), was {self.entry_cutoff.total_seconds() / 60:g} min"
            )
        if self.flat_at is not None and not self.open_offset < self.flat_at <= self.close_offset:
            raise ValueError(
                f"calendar {self.name}: flat_at {clock_text(self.flat_at)} must be within the session (after the "
                f"{clock_text(self.open_offset)} open, at or before the {clock_text(self.close_offset)} close)"
            )
        object.__setattr__(self, "_early", early)
        object.__setattr__(self, "_sessions", {})

    def __getstate__(self) -> list[object]:
        """Pickle the fields without the memo of sessions (a worker process builds its own)."""
        return [{} if f.name == "_sessions" else getattr(self, f.name) for f in dataclasses.fields(self)]

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

    def early_close(self, day: date) -> timedelta | None:
        """The earlier close offset of trading date `day`, or None on a regular day."""
        return self._early.get(day)

    def session(self, day: date) -> tuple[datetime, datetime] | None:
        """UTC open and close of the session of trading date `day`, or None if it does not trade."""
        try:
            return self._sessions[day]
        except KeyError:
            pass
        bounds = None
        if self.is_trading_day(day):
            close_offset = self._early.get(day, self.close_offset)
            bounds = self._instant(day, self.open_offset), self._instant(day, close_offset)
        if len(self._sessions) >= _MAX_MEMO_SESSIONS:  # the calendar is immutable: only its size is bounded
            self._sessions.clear()
        self._sessions[day] = bounds
        return bounds

    def flat_time(self, day: date) -> datetime | None:
        """UTC instant by which intraday positions of trading date `day` are flat (None: the session's end)."""
        bounds = self.session(day)
        if bounds is None or self.flat_at is None:
            return None
        return min(self._instant(day, self.flat_at), bounds[1])

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

    @property
    def blocks_entries(self) -> bool:
        """Whether `entry_block` can refuse an entry at all (an entry cutoff or a flat time is set)."""
        return self.entry_cutoff > timedelta(0) or self.flat_at is not None

    def entry_block(self, ts: datetime) -> str | None:
        """Say why a new entry at `ts` is refused (near a close into a closed market, past the flat time), or None."""
        ensure_utc(ts, "ts")
        if not self.blocks_entries:
            return None
        day = self.trading_date(ts)
        bounds = self.session(day)
        if bounds is None or not bounds[0] <= ts < bounds[1]:
            return None  # closed: an order waits for the next open, and the staleness rule judges the setup
        closed = bounds[1]
        flat = self.flat_time(day)
        if flat is not None and ts >= flat:
            return (
                f"intraday positions on {self.name} go flat at {self._local(flat)} {self.timezone}: "
                "no new entries from then to the close"
            )
        if self.entry_cutoff > timedelta(0) and ts >= closed - self.entry_cutoff and self._closes_into_gap(day, closed):
            minutes = int(self.entry_cutoff.total_seconds() // 60)
            early = " (early close)" if day in self._early else ""
            return (
                f"no new entries in the last {minutes} min before the {self.name} close at "
                f"{self._local(closed)} {self.timezone}{early}"
            )
        return None

    def replace(self, **changes: Any) -> SessionCalendar:
        """A copy with the given fields changed (checked like a new calendar)."""
        return dataclasses.replace(self, **changes)

    def with_holidays(self, holidays: frozenset[date]) -> SessionCalendar:
        return self.replace(holidays=holidays)

    def local_nanos(self, times: IntArray) -> IntArray:
        """Local wall-clock time of UTC instants, as nanoseconds of a naive clock."""
        return local_nanos(times, self.timezone)

    def session_day(self, times: IntArray) -> IntArray:
        """Trading-date id (days since the epoch) for each UTC instant."""
        return (self.local_nanos(times) - _to_ns(self.open_offset)) // _DAY_NS

    def exit_session(self, times: IntArray) -> IntArray:
        """Intraday-exit session id per instant: one per trading date, and one per minute from the flat time on.

        Ids grow with time. With them the exit search closes a position entered before the flat time (or early
        close) at the close of the last bar starting before it, and one whose first bar starts later at its close.
        """
        local = self.local_nanos(times)
        from_open = local - _to_ns(self.open_offset)
        day = from_open // _DAY_NS
        since_midnight = local - day * _DAY_NS
        regular = self.close_offset if self.flat_at is None else self.flat_at
        cut = np.full(len(day), _to_ns(regular), dtype=np.int64)
        if self._early:
            early_days = np.array(sorted((d - _EPOCH_DATE).days for d in self._early), dtype=np.int64)
            early_cut = np.array([_to_ns(self._early[_EPOCH_DATE + timedelta(days=int(d))]) for d in early_days])
            at = np.minimum(np.searchsorted(early_days, day), len(early_days) - 1)
            cut = np.where(early_days[at] == day, np.minimum(cut, early_cut[at]), cut)
        late_minute = 1 + (from_open - day * _DAY_NS) // _MINUTE_NS  # 1..1440
        return day * _EXIT_IDS_PER_DAY + np.where(since_midnight >= cut, late_minute, 0)

    def bar_closes(self, times: IntArray, interval: Interval) -> IntArray:
        """When each bar opening at `times` closes: open + interval, but never after its session's close.

        NSE's hourly bars start 09:15, so the last one (15:15) closes at 15:30, not 16:15; a bar outside any
        session (a weekend crypto bar on an exchange calendar, one opening at or after its session's close), or in a
        round-the-clock one, keeps open + interval. A bar always closes after it opens.
        """
        ends = times + interval.nanos
        if not interval.is_intraday or len(times) == 0 or self._round_the_clock:
            return ends
        days, of_day = np.unique(self.session_day(times), return_inverse=True)
        caps = np.array([self._bar_cap(d) for d in days.tolist()], dtype=np.int64)[of_day]
        return np.where(times < caps, np.minimum(ends, caps), ends)

    @property
    def _round_the_clock(self) -> bool:
        """Whether every session lasts a whole day (crypto on UTC): then no session's end cuts a bar short. Not where
        the clocks change: there a 24-hour local session lasts 23 hours on one day a year (FX in New York)."""
        whole_days = not self._early and self.close_offset - self.open_offset >= timedelta(days=1)
        return whole_days and len(_offset_table(self.timezone)[0]) == 1

    def _bar_cap(self, day_id: int) -> int:
        """When the session of trading date `day_id` (days since the epoch) cuts a bar short: its close, in ns; a
        round-the-clock session (crypto, FX) runs on into the next and cuts nothing, nor does a day off."""
        bounds = self.session(_EPOCH_DATE + timedelta(days=day_id))
        if bounds is None or bounds[1] - bounds[0] >= timedelta(days=1):
            return _NEVER_NS
        return to_nanos(bounds[1])

    def minutes_from_open(self, times: IntArray) -> IntArray:
        """Minutes since that trading date's session open, for each UTC instant."""
        return ((self.local_nanos(times) - _to_ns(self.open_offset)) % _DAY_NS) // _MINUTE_NS

    def local_minute_of_day(self, times: IntArray) -> IntArray:
        """Local wall-clock minute of day (0..1439) for each UTC instant."""
        return (self.local_nanos(times) % _DAY_NS) // _MINUTE_NS

    def _instant(self, day: date, offset: timedelta) -> datetime:
        # Offsets are wall-clock: add them to the naive local midnight, then attach the zone.
        local = datetime(day.year, day.month, day.day) + offset  # noqa: DTZ001 - naive on purpose
        return local.replace(tzinfo=self.zone).astimezone(UTC)

    def _local(self, ts: datetime) -> str:
        return f"{ts.astimezone(self.zone):%H:%M}"

    def _closes_into_gap(self, day: date, closed: datetime) -> bool:
        """Whether the market stays closed after `day`'s session closes at `closed` (the next opens later)."""
        for ahead in range(1, _MAX_LOOKBACK_DAYS):
            following = self.session(day + timedelta(days=ahead))
            if following is not None:
                return following[0] > closed
        return True


def calendar_warnings(
    calendars: Iterable[SessionCalendar], now: datetime, within: timedelta = timedelta(days=HOLIDAY_WARNING_DAYS)
) -> list[str]:
    """One line per calendar whose holiday data ends within `within` of `now` or already has."""
    ensure_utc(now, "now")
    lines = {}
    for calendar in calendars:
        known = calendar.holidays_known_until
        if known is not None and known - now.astimezone(calendar.zone).date() <= within:
            lines[calendar.name] = (
                f"{calendar.name} holidays are known only until {known:%Y-%m-%d}: "
                f"add [calendars.{calendar.name}].holidays for later dates"
            )
    return [lines[name] for name in sorted(lines)]


_TABLE_START_NS = 631_152_000 * 1_000_000_000  # 1990-01-01T00:00Z
_TABLE_END_NS = 2_871_763_200 * 1_000_000_000  # 2061-01-01T00:00Z
_QUARTER_HOUR_NS = 15 * _MINUTE_NS


def _utc_offsets_slow(times: IntArray, timezone: str) -> IntArray:
    import pandas as pd  # noqa: PLC0415 - only for instants outside the offset tables; light commands never load it

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


def clock_text(offset: timedelta) -> str:
    """Show a wall-clock offset from local midnight as HH:MM, saying when it falls on the day before."""
    minutes = int(offset.total_seconds() // 60)
    before = " (day before)" if minutes < 0 else ""
    minutes %= 24 * 60
    return f"{minutes // 60:02d}:{minutes % 60:02d}{before}"


_QUARTER: Final = timedelta(minutes=15)

BUILTIN_CALENDARS: dict[str, SessionCalendar] = {
    "XNSE": SessionCalendar(
        "XNSE", "Asia/Kolkata", _hm(9, 15), _hm(15, 30), entry_cutoff=_QUARTER, flat_at=_hm(15, 15)
    ),
    "XNYS": SessionCalendar("XNYS", "America/New_York", _hm(9, 30), _hm(16), entry_cutoff=_QUARTER),
    # FX and spot metals: Sunday 17:00 New York to Friday 17:00 New York, trading date = the day it ends.
    "FX": SessionCalendar("FX", "America/New_York", _hm(-7), _hm(17), entry_cutoff=_QUARTER),
    "CRYPTO": SessionCalendar("CRYPTO", "UTC", _hm(0), _hm(24), frozenset(range(7))),
}


def get_calendar(name: str) -> SessionCalendar:
    """Look up a built-in calendar by name, naming the known ones when it is missing."""
    try:
        return BUILTIN_CALENDARS[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_CALENDARS))
        raise ValueError(f"unknown market calendar {name!r}; known calendars: {known}") from None
