"""Session calendars: when each market trades, in UTC, across weekends and daylight-saving changes."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bars import from_nanos, to_nanos
from engine.calendars import BUILTIN_CALENDARS, SessionCalendar, get_calendar
from engine.domain import Interval
from tests.support import shared_context

XNSE, XNYS, FX, CRYPTO = (get_calendar(n) for n in ("XNSE", "XNYS", "FX", "CRYPTO"))
EPOCH = date(1970, 1, 1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- Sessions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [date(2025, 1, 10), date(2025, 7, 11)])
def test_nse_trades_0915_to_1530_ist_all_year(day: date) -> None:
    assert XNSE.session(day) == (utc(day.year, day.month, day.day, 3, 45), utc(day.year, day.month, day.day, 10, 0))


@pytest.mark.parametrize(
    ("day", "opens", "closes"),
    [
        (date(2025, 1, 10), utc(2025, 1, 10, 14, 30), utc(2025, 1, 10, 21, 0)),  # EST
        (date(2025, 7, 11), utc(2025, 7, 11, 13, 30), utc(2025, 7, 11, 20, 0)),  # EDT
        (date(2025, 3, 7), utc(2025, 3, 7, 14, 30), utc(2025, 3, 7, 21, 0)),  # Friday before DST starts
        (date(2025, 3, 10), utc(2025, 3, 10, 13, 30), utc(2025, 3, 10, 20, 0)),  # Monday after
        (date(2025, 10, 31), utc(2025, 10, 31, 13, 30), utc(2025, 10, 31, 20, 0)),  # Friday before DST ends
        (date(2025, 11, 3), utc(2025, 11, 3, 14, 30), utc(2025, 11, 3, 21, 0)),  # Monday after
    ],
)
def test_nyse_session_follows_new_york_daylight_saving(day: date, opens: datetime, closes: datetime) -> None:
    assert XNYS.session(day) == (opens, closes)


@pytest.mark.parametrize(
    ("day", "opens", "closes"),
    [
        # The trading date is the day the session ends, at 17:00 New York.
        (date(2025, 7, 14), utc(2025, 7, 13, 21, 0), utc(2025, 7, 14, 21, 0)),  # summer Monday: opens Sunday
        (date(2025, 7, 11), utc(2025, 7, 10, 21, 0), utc(2025, 7, 11, 21, 0)),  # summer Friday close 21:00Z
        (date(2025, 1, 13), utc(2025, 1, 12, 22, 0), utc(2025, 1, 13, 22, 0)),  # winter Monday: opens Sunday
        (date(2025, 1, 10), utc(2025, 1, 9, 22, 0), utc(2025, 1, 10, 22, 0)),  # winter Friday close 22:00Z
        (date(2025, 3, 10), utc(2025, 3, 9, 21, 0), utc(2025, 3, 10, 21, 0)),  # first week of EDT
        (date(2025, 11, 3), utc(2025, 11, 2, 22, 0), utc(2025, 11, 3, 22, 0)),  # first week of EST
    ],
)
def test_fx_week_runs_from_sunday_to_friday_17_00_new_york(day: date, opens: datetime, closes: datetime) -> None:
    assert FX.session(day) == (opens, closes)


@pytest.mark.parametrize("calendar", [XNSE, XNYS, FX])
@pytest.mark.parametrize("day", [date(2025, 7, 12), date(2025, 7, 13)])
def test_exchanges_and_fx_have_no_weekend_sessions(calendar: SessionCalendar, day: date) -> None:
    assert calendar.session(day) is None
    assert not calendar.is_trading_day(day)


def test_crypto_trades_every_day_midnight_to_midnight_utc() -> None:
    for offset in range(7):
        day = date(2025, 7, 7) + timedelta(days=offset)
        assert CRYPTO.session(day) == (
            utc(day.year, day.month, day.day),
            utc(day.year, day.month, day.day) + timedelta(days=1),
        )


# --- is_open ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "ts", "expected"),
    [
        (XNSE, utc(2025, 7, 11, 3, 44, 59), False),
        (XNSE, utc(2025, 7, 11, 3, 45), True),  # open is inclusive
        (XNSE, utc(2025, 7, 11, 9, 59, 59), True),
        (XNSE, utc(2025, 7, 11, 10, 0), False),  # close is exclusive
        (XNSE, utc(2025, 7, 12, 5, 0), False),  # Saturday
        (XNYS, utc(2025, 7, 11, 13, 30), True),
        (XNYS, utc(2025, 1, 10, 14, 0), False),  # 09:00 New York in winter
        (XNYS, utc(2025, 7, 11, 20, 30), False),
        (FX, utc(2025, 7, 11, 20, 59), True),  # Friday, last summer minute
        (FX, utc(2025, 7, 11, 21, 0), False),
        (FX, utc(2025, 1, 10, 21, 30), True),  # Friday in winter still trades until 22:00Z
        (FX, utc(2025, 7, 12, 12, 0), False),  # Saturday
        (FX, utc(2025, 7, 13, 20, 30), False),  # Sunday before the open
        (FX, utc(2025, 7, 13, 21, 30), True),  # Sunday after the summer open
        (FX, utc(2025, 1, 12, 21, 30), False),  # Sunday in winter: opens only at 22:00Z
        (FX, utc(2025, 7, 16, 3, 0), True),  # midweek overnight
        (CRYPTO, utc(2025, 7, 12, 12, 0), True),
        (CRYPTO, utc(2025, 7, 13, 23, 59), True),
    ],
)
def test_is_open(calendar: SessionCalendar, ts: datetime, expected: bool) -> None:
    assert calendar.is_open(ts) is expected


def test_is_open_refuses_a_naive_timestamp() -> None:
    with pytest.raises(ValueError, match="ts must be a timezone-aware UTC datetime"):
        XNSE.is_open(datetime(2025, 7, 11, 5, 0))


# --- last_open_at_or_before and open_duration ---------------------------------------------------


def test_last_open_is_the_instant_itself_while_open() -> None:
    ts = utc(2025, 7, 11, 5, 17, 3)
    assert XNSE.last_open_at_or_before(ts) == ts
    assert CRYPTO.last_open_at_or_before(ts) == ts


@pytest.mark.parametrize(
    ("calendar", "ts", "expected"),
    [
        (XNSE, utc(2025, 7, 11, 14, 0), utc(2025, 7, 11, 10, 0)),  # Friday evening: today's close
        (XNSE, utc(2025, 7, 12, 9, 0), utc(2025, 7, 11, 10, 0)),  # Saturday: Friday's close
        (XNSE, utc(2025, 7, 14, 3, 0), utc(2025, 7, 11, 10, 0)),  # Monday before the open
        (XNSE, utc(2025, 7, 15, 2, 0), utc(2025, 7, 14, 10, 0)),  # Tuesday before the open
        (XNYS, utc(2025, 7, 12, 3, 0), utc(2025, 7, 11, 20, 0)),
        (FX, utc(2025, 7, 12, 10, 0), utc(2025, 7, 11, 21, 0)),  # summer week ended 21:00Z
        (FX, utc(2025, 1, 12, 21, 59), utc(2025, 1, 10, 22, 0)),  # winter Sunday just before the open
    ],
)
def test_last_open_while_closed_is_the_previous_close(calendar: SessionCalendar, ts: datetime, expected: datetime):
    assert calendar.last_open_at_or_before(ts) == expected


def test_last_open_skips_holidays() -> None:
    closed_friday = XNSE.with_holidays(frozenset({date(2025, 7, 11)}))
    assert closed_friday.session(date(2025, 7, 11)) is None
    assert closed_friday.last_open_at_or_before(utc(2025, 7, 12, 9, 0)) == utc(2025, 7, 10, 10, 0)
    assert not closed_friday.is_open(utc(2025, 7, 11, 5, 0))


def test_last_open_is_none_when_nothing_traded_within_the_lookback() -> None:
    never = XNSE.with_holidays(frozenset(date(2025, 6, 1) + timedelta(days=k) for k in range(60)))
    assert never.last_open_at_or_before(utc(2025, 7, 12, 9, 0)) is None


@pytest.mark.parametrize(
    ("calendar", "start", "end", "expected"),
    [
        # FX summer: Friday 20:00-21:00Z, then Sunday 21:00Z to Monday 01:00Z.
        (FX, utc(2025, 7, 11, 20, 0), utc(2025, 7, 14, 1, 0), timedelta(hours=5)),
        # FX winter: Friday 21:00-22:00Z, then Sunday 22:00Z to Monday 01:00Z.
        (FX, utc(2025, 1, 10, 21, 0), utc(2025, 1, 13, 1, 0), timedelta(hours=4)),
        # NSE: the last hour on Friday and the first hour on Monday.
        (XNSE, utc(2025, 7, 11, 9, 0), utc(2025, 7, 14, 4, 45), timedelta(hours=2)),
        # Overnight on the NYSE is not market time at all.
        (XNYS, utc(2025, 7, 10, 20, 0), utc(2025, 7, 11, 13, 30), timedelta(0)),
        # A whole NSE week is five 6h15 sessions.
        (XNSE, utc(2025, 7, 5), utc(2025, 7, 12), 5 * timedelta(hours=6, minutes=15)),
        # Crypto never stops.
        (CRYPTO, utc(2025, 7, 11, 20, 0), utc(2025, 7, 14, 1, 0), timedelta(days=2, hours=5)),
    ],
)
def test_open_duration(calendar: SessionCalendar, start: datetime, end: datetime, expected: timedelta) -> None:
    assert calendar.open_duration(start, end) == expected


def test_open_duration_is_zero_for_an_empty_or_reversed_interval() -> None:
    ts = utc(2025, 7, 11, 5, 0)
    assert XNSE.open_duration(ts, ts) == timedelta(0)
    assert XNSE.open_duration(ts, ts - timedelta(hours=1)) == timedelta(0)


def test_open_duration_beyond_the_lookback_is_plain_elapsed_time() -> None:
    start, end = utc(2025, 6, 1), utc(2025, 7, 1)
    assert XNSE.open_duration(start, end) == end - start


# --- Vectorised views agree with the scalar ones ------------------------------------------------

instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC))


@settings(max_examples=200, deadline=None)
@given(ts=instants, name=st.sampled_from(sorted(BUILTIN_CALENDARS)))
def test_vectorised_session_day_and_minutes_agree_with_the_scalar_calendar(ts: datetime, name: str) -> None:
    calendar = get_calendar(name)
    ts = ts.replace(microsecond=0)
    times = np.array([to_nanos(ts)], dtype=np.int64)
    assert int(calendar.session_day(times)[0]) == (calendar.trading_date(ts) - EPOCH).days
    if calendar.is_open(ts):
        bounds = calendar.session(calendar.trading_date(ts))
        assert bounds is not None
        elapsed = int((ts - bounds[0]).total_seconds() // 60)
        assert int(calendar.minutes_from_open(times)[0]) == elapsed
        assert 0 <= elapsed < calendar.session_minutes


@pytest.mark.parametrize("symbol", ["RELIANCE", "SPY", "EURUSD", "BTCUSDT"])
def test_real_bar_times_map_to_their_trading_day_and_minute(symbol: str) -> None:
    ctx = shared_context(symbol)
    calendar = ctx.calendar
    step = max(len(ctx) // 400, 1)
    times = ctx.bars.time[::step]
    days, minutes = calendar.session_day(times), calendar.minutes_from_open(times)
    checked = 0
    for t, day, minute in zip(times.tolist(), days.tolist(), minutes.tolist(), strict=True):
        ts = from_nanos(t)
        trading_date = calendar.trading_date(ts)
        assert day == (trading_date - EPOCH).days
        bounds = calendar.session(trading_date)
        if bounds is not None and bounds[0] <= ts < bounds[1]:
            assert minute == (ts - bounds[0]) // timedelta(minutes=1)
            checked += 1
    assert checked > 300


def test_nse_bar_minutes_from_the_open_and_local_clock() -> None:
    ctx = shared_context("RELIANCE", n=75)  # the whole first session, 03:45..09:55Z
    assert ctx.minutes_from_open.tolist() == list(range(0, 375, 5))
    assert ctx.local_minute[0] == 9 * 60 + 15
    assert ctx.local_minute[-1] == 15 * 60 + 25
    assert set(ctx.session_day.tolist()) == {(date(2025, 1, 1) - EPOCH).days}


def test_the_nse_session_of_every_real_bar_is_one_trading_day() -> None:
    ctx = shared_context("RELIANCE")
    per_day = np.bincount(ctx.session_day - ctx.session_day.min())
    per_day = per_day[per_day > 0]
    assert per_day.max() == 75  # 6h15 of 5-minute bars, never split across two trading days


# --- Construction -------------------------------------------------------------------------------


def test_unknown_calendar_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown market calendar 'XLON'; known calendars: CRYPTO, FX, XNSE, XNYS"):
        get_calendar("XLON")


@pytest.mark.parametrize(
    ("open_offset", "close_offset", "weekdays", "message"),
    [
        (timedelta(hours=16), timedelta(hours=9), frozenset(range(5)), "close_offset must be after open_offset"),
        (timedelta(hours=-8), timedelta(hours=17), frozenset(range(5)), "must not last more than a day"),
        (timedelta(hours=9), timedelta(hours=16), frozenset({7}), "weekdays must be within 0"),
    ],
)
def test_calendar_construction_refuses_nonsense(
    open_offset: timedelta, close_offset: timedelta, weekdays: frozenset[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SessionCalendar("BAD", "UTC", open_offset, close_offset, weekdays)


def _bar_close_one_by_one(calendar: SessionCalendar, opened: datetime, interval: Interval) -> datetime:
    """The rule of `bar_closes` for one bar, from the scalar calendar: open + interval, an intraday bar that opens
    inside its session cut at the session's close."""
    end = opened + interval.delta
    if not interval.is_intraday:
        return end
    bounds = calendar.session(calendar.trading_date(opened))
    if bounds is None or bounds[1] - bounds[0] >= timedelta(days=1) or opened >= bounds[1]:
        return end
    return min(end, bounds[1])


EARLY_AND_HOLIDAYS = get_calendar("XNYS").replace(
    holidays=frozenset({date(2024, 7, 4), date(2024, 12, 25)}),
    early_closes=frozenset({(date(2024, 7, 3), timedelta(hours=13)), (date(2024, 11, 29), timedelta(hours=13))}),
)

EVERY_DAY_NEW_YORK = SessionCalendar(  # 24-hour sessions every day: 23 and 25 hours long when the clocks change
    "NY24", "America/New_York", timedelta(hours=-7), timedelta(hours=17), weekdays=frozenset(range(7))
)
CALENDARS = {"EARLY": EARLY_AND_HOLIDAYS, "NY24": EVERY_DAY_NEW_YORK}


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(["XNSE", "XNYS", "FX", "CRYPTO", "EARLY", "NY24"]),
    interval=st.sampled_from([Interval.M5, Interval.H1, Interval.D1]),
    start=st.one_of(  # the two clock changes of New York and any day of the second half of 2024
        st.sampled_from([datetime(2024, 3, 8, 12), datetime(2024, 11, 1, 12)]),
        st.datetimes(min_value=datetime(2024, 6, 1), max_value=datetime(2024, 12, 31)),
    ),
    count=st.integers(1, 400),
)
def test_vectorised_bar_closes_agree_with_the_scalar_calendar_bar_by_bar(
    name: str, interval: Interval, start: datetime, count: int
) -> None:
    calendar = CALENDARS.get(name) or get_calendar(name)
    step = timedelta(minutes=25)  # not a whole interval: bars straddle closes, weekends and holidays at random
    opens = [start.replace(tzinfo=UTC) + k * step for k in range(count)]
    closes = calendar.bar_closes(np.array([to_nanos(t) for t in opens], dtype=np.int64), interval)
    assert [from_nanos(int(c)) for c in closes] == [_bar_close_one_by_one(calendar, t, interval) for t in opens]
    assert bool(np.all(closes > np.array([to_nanos(t) for t in opens])))  # a bar closes after it opens


def test_a_calendar_remembers_sessions_without_changing_what_it_equals_or_pickles() -> None:
    calendar = EARLY_AND_HOLIDAYS
    fresh = calendar.replace()
    assert calendar.session(date(2024, 7, 3)) == fresh.session(date(2024, 7, 3))  # the early close, memo or not
    assert calendar.session(date(2024, 7, 4)) is None
    assert calendar == fresh and hash(calendar) == hash(fresh)
    copied = pickle.loads(pickle.dumps(calendar))
    assert copied == calendar and copied.session(date(2024, 7, 3)) == calendar.session(date(2024, 7, 3))
    assert len(pickle.dumps(calendar)) == len(pickle.dumps(fresh))  # the memo is not sent to worker processes
