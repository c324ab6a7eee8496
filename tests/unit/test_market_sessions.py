"""Market hours rules: early closes, the entry cutoff before a close, the intraday flat time, holiday warnings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bars import Bars, to_nanos
from engine.calendars import BUILTIN_CALENDARS, SessionCalendar, calendar_warnings, get_calendar
from engine.catalog import default_instrument
from engine.domain import Rejection, Setup, Side
from engine.exits import find_exit
from engine.pipeline import Candidate, ValidationRules, validate
from engine.trading import ExitReason
from tests.builders import make_bars, make_context

XNSE, XNYS, FX, CRYPTO = (get_calendar(n) for n in ("XNSE", "XNYS", "FX", "CRYPTO"))
THANKSGIVING_FRIDAY = date(2026, 11, 27)
XNYS_HALF_DAY = XNYS.replace(early_closes=frozenset({(THANKSGIVING_FRIDAY, timedelta(hours=13))}))
NSE_FLAT = "intraday positions on XNSE go flat at 15:15 Asia/Kolkata: no new entries from then to the close"
FX_CUTOFF = "no new entries in the last 15 min before the FX close at 17:00 America/New_York"
FIVE = timedelta(minutes=5)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def nse_day(day: date, bars: int = 75) -> list[datetime]:
    """Open times of the 5-minute bars of one NSE session from 09:15 IST."""
    opened = utc(day.year, day.month, day.day, 3, 45)
    return [opened + FIVE * k for k in range(bars)]


def nanos(times: list[datetime]) -> np.ndarray:
    return np.array([to_nanos(t) for t in times], dtype=np.int64)


# --- Defaults -----------------------------------------------------------------------------------


def test_built_in_entry_rules() -> None:
    assert (XNSE.entry_cutoff, XNSE.flat_at) == (timedelta(minutes=15), timedelta(hours=15, minutes=15))
    assert (XNYS.entry_cutoff, XNYS.flat_at) == (timedelta(minutes=15), None)
    assert (FX.entry_cutoff, FX.flat_at) == (timedelta(minutes=15), None)
    assert (CRYPTO.entry_cutoff, CRYPTO.flat_at) == (timedelta(0), None)
    assert all(c.holidays_known_until is None and not c.early_closes for c in BUILTIN_CALENDARS.values())


# --- Early closes -------------------------------------------------------------------------------


def test_an_early_close_shortens_the_session() -> None:
    assert XNYS_HALF_DAY.early_close(THANKSGIVING_FRIDAY) == timedelta(hours=13)
    assert XNYS_HALF_DAY.early_close(date(2026, 11, 30)) is None
    assert XNYS_HALF_DAY.session(THANKSGIVING_FRIDAY) == (utc(2026, 11, 27, 14, 30), utc(2026, 11, 27, 18, 0))
    assert XNYS_HALF_DAY.session(date(2026, 11, 30)) == (utc(2026, 11, 30, 14, 30), utc(2026, 11, 30, 21, 0))
    assert XNYS_HALF_DAY.is_open(utc(2026, 11, 27, 17, 59))
    assert not XNYS_HALF_DAY.is_open(utc(2026, 11, 27, 18, 0))
    assert XNYS_HALF_DAY.open_duration(utc(2026, 11, 27, 14), utc(2026, 11, 28)) == timedelta(hours=3, minutes=30)
    assert XNYS_HALF_DAY.last_open_at_or_before(utc(2026, 11, 27, 20)) == utc(2026, 11, 27, 18, 0)


def test_a_holiday_wins_over_an_early_close_on_the_same_date() -> None:
    closed = XNYS_HALF_DAY.with_holidays(frozenset({THANKSGIVING_FRIDAY}))
    assert closed.session(THANKSGIVING_FRIDAY) is None
    assert closed.early_closes == XNYS_HALF_DAY.early_closes  # with_holidays keeps everything else


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (utc(2026, 11, 27, 17, 44, 59), None),
        (
            utc(2026, 11, 27, 17, 45),
            "no new entries in the last 15 min before the XNYS close at 13:00 America/New_York",
        ),
        (
            utc(2026, 11, 27, 17, 59),
            "no new entries in the last 15 min before the XNYS close at 13:00 America/New_York",
        ),
        (utc(2026, 11, 27, 18, 0), None),  # closed: an order waits for Monday's open
        (utc(2026, 11, 27, 20, 50), None),  # a regular day's cutoff does not apply
        (utc(2026, 11, 30, 20, 44), None),
        (
            utc(2026, 11, 30, 20, 45),
            "no new entries in the last 15 min before the XNYS close at 16:00 America/New_York",
        ),
    ],
)
def test_nyse_entries_stop_15_minutes_before_the_close_early_or_not(ts: datetime, expected: str | None) -> None:
    block = XNYS_HALF_DAY.entry_block(ts)
    if expected is None:
        assert block is None
    else:
        assert block is not None and block.startswith(expected)
    if ts.day == 27 and expected is not None:
        assert block is not None and block.endswith("(early close)")


def test_exit_session_splits_an_early_close_day_at_the_close() -> None:
    times = [utc(2026, 11, 27, 14, 30) + FIVE * k for k in range(78)]  # a full regular day of 5m bars
    ids = XNYS_HALF_DAY.exit_session(nanos(times))
    first_late = times.index(utc(2026, 11, 27, 18, 0))  # the 13:00 bar
    assert len(set(ids[:first_late].tolist())) == 1
    assert len(set(ids[first_late - 1 :].tolist())) == len(times) - first_late + 1  # from 13:00 a new id per bar
    regular = XNYS_HALF_DAY.exit_session(nanos([t + timedelta(days=3) for t in times]))  # Monday 30th
    assert len(set(regular.tolist())) == 1


# --- FX: only the weekly close, across daylight saving ------------------------------------------


@pytest.mark.parametrize(
    ("friday", "cutoff_utc", "close_utc"),
    [
        (date(2026, 3, 6), utc(2026, 3, 6, 21, 45), utc(2026, 3, 6, 22, 0)),  # EST; DST starts Sunday 8th
        (date(2026, 3, 13), utc(2026, 3, 13, 20, 45), utc(2026, 3, 13, 21, 0)),  # first EDT week
        (date(2026, 10, 30), utc(2026, 10, 30, 20, 45), utc(2026, 10, 30, 21, 0)),  # EDT; DST ends Sunday 1st
        (date(2026, 11, 6), utc(2026, 11, 6, 21, 45), utc(2026, 11, 6, 22, 0)),  # first EST week
    ],
)
def test_fx_blocks_entries_only_before_the_friday_close(friday: date, cutoff_utc: datetime, close_utc: datetime):
    minute = timedelta(minutes=1)
    assert FX.entry_block(cutoff_utc - minute) is None
    assert FX.entry_block(cutoff_utc) == FX_CUTOFF
    assert FX.entry_block(close_utc - minute) == FX_CUTOFF
    assert FX.entry_block(close_utc) is None  # the weekend: closed
    thursday_close = close_utc - timedelta(days=1)  # the daily 17:00 roll runs straight into the next session
    assert FX.entry_block(thursday_close - FIVE) is None
    assert FX.entry_block(thursday_close) is None


def test_fx_blocks_before_a_holiday_close() -> None:
    christmas = FX.with_holidays(frozenset({date(2025, 12, 25)}))  # Thursday: Wednesday's close is followed by a gap
    assert christmas.entry_block(utc(2025, 12, 24, 21, 50)) == FX_CUTOFF
    assert FX.entry_block(utc(2025, 12, 24, 21, 50)) is None


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)))
def test_crypto_never_blocks_an_entry(ts: datetime) -> None:
    assert CRYPTO.entry_block(ts) is None


def test_crypto_midnight_is_not_a_close() -> None:
    with_cutoff = CRYPTO.replace(entry_cutoff=timedelta(minutes=15))  # back-to-back sessions: no gap to guard
    assert with_cutoff.entry_block(utc(2025, 7, 11, 23, 55)) is None


# --- NSE: flat at 15:15 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (utc(2026, 11, 20, 9, 44, 59), None),  # 15:14:59 IST
        (utc(2026, 11, 20, 9, 45), NSE_FLAT),  # 15:15
        (utc(2026, 11, 20, 9, 50), NSE_FLAT),  # 15:20
        (utc(2026, 11, 20, 9, 59), NSE_FLAT),
        (utc(2026, 11, 20, 10, 0), None),  # 15:30, the bell: closed
        (utc(2026, 11, 21, 6, 0), None),  # Saturday
        (utc(2026, 11, 20, 3, 45), None),  # the open
    ],
)
def test_nse_entry_block_from_the_flat_time(ts: datetime, expected: str | None) -> None:
    assert XNSE.entry_block(ts) == expected


def test_flat_time_is_the_earlier_of_flat_at_and_an_early_close() -> None:
    day = date(2026, 11, 20)
    assert XNSE.flat_time(day) == utc(2026, 11, 20, 9, 45)
    half = XNSE.replace(early_closes=frozenset({(day, timedelta(hours=13))}))
    assert half.flat_time(day) == utc(2026, 11, 20, 7, 30)  # 13:00 IST
    assert half.entry_block(utc(2026, 11, 20, 7, 29)) is not None  # inside the 15 minutes before 13:00
    assert XNYS.flat_time(day) is None
    assert XNSE.flat_time(date(2026, 11, 21)) is None  # no session


def test_nse_exit_session_splits_the_day_at_15_15() -> None:
    times = nse_day(date(2026, 11, 19)) + nse_day(date(2026, 11, 20))
    ids = XNSE.exit_session(nanos(times)).tolist()
    first_day = ids[:75]
    assert len(set(first_day[:72])) == 1  # 09:15 .. the 15:10 bar
    assert len(set(first_day[71:])) == 4  # the 15:15, 15:20 and 15:25 bars each on their own
    assert len(set(ids[75:147])) == 1 and ids[75] not in first_day  # the next day, to its 15:10 bar
    assert ids == sorted(ids)


@settings(max_examples=300, deadline=None)
@given(
    ts=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    minutes=st.integers(1, 36 * 60),
    name=st.sampled_from(sorted(BUILTIN_CALENDARS)),
)
def test_exit_session_agrees_with_the_scalar_flat_time(ts: datetime, minutes: int, name: str) -> None:
    calendar = get_calendar(name).replace(early_closes=frozenset({(date(2026, 11, 27), timedelta(hours=13))}))
    first = ts.replace(second=0, microsecond=0)
    second = first + timedelta(minutes=minutes)
    early_id, later_id = calendar.exit_session(nanos([first, second])).tolist()
    # Two instants share an exit session only on the same trading date, both before its flat time or close.
    same = calendar.trading_date(first) == calendar.trading_date(second) and not _late(calendar, second)
    assert (early_id == later_id) is same
    assert early_id <= later_id


def _late(calendar: SessionCalendar, ts: datetime) -> bool:
    day = calendar.trading_date(ts)
    local_midnight = datetime(day.year, day.month, day.day)
    since_midnight = ts.astimezone(calendar.zone).replace(tzinfo=None) - local_midnight
    cut = calendar.close_offset if calendar.flat_at is None else calendar.flat_at
    early = calendar.early_close(day)
    return since_midnight >= (cut if early is None else min(cut, early))


# --- The exit search and validation use the rules -----------------------------------------------


def _nse_two_days() -> Bars:
    times = nse_day(date(2025, 1, 6)) + nse_day(date(2025, 1, 7), 3)
    close = [100.0] * len(times)
    close[71] = 101.3  # the 15:10 bar
    return make_bars(close, high=[c + 0.5 for c in close], low=[c - 0.5 for c in close], times=times)


def test_find_exit_flattens_an_nse_position_at_the_close_of_the_15_10_bar() -> None:
    bars = _nse_two_days()
    ctx = make_context(bars)
    event = find_exit(bars, 10, Side.LONG, 95.0, 110.0, session_day=ctx.exit_session)
    assert event is not None
    assert (event.bar_index, event.price, event.reason) == (71, 101.3, ExitReason.SESSION_END)
    assert event.at == utc(2025, 1, 6, 9, 45)  # 15:15 IST
    # Until the 15:15 bar exists nobody knows the 15:10 bar was the last one before the flat time.
    head = bars.head(72)
    assert find_exit(head, 10, Side.LONG, 95.0, 110.0, session_day=make_context(head).exit_session) is None


def test_a_position_whose_first_bar_starts_after_the_flat_time_exits_at_that_bars_close() -> None:
    bars = _nse_two_days()  # entered at 15:12 IST, say: the first bar searched is the 15:15 bar
    event = find_exit(bars, 72, Side.LONG, 95.0, 110.0, session_day=make_context(bars).exit_session)
    assert event is not None
    assert (event.bar_index, event.reason, event.at) == (72, ExitReason.SESSION_END, utc(2025, 1, 6, 9, 50))


def test_market_context_caches_the_exit_session() -> None:
    ctx = make_context(_nse_two_days())
    assert ctx.exit_session is ctx.exit_session
    assert ctx.exit_session.tolist() == XNSE.exit_session(ctx.bars.time).tolist()


def _validate(bar_time: datetime) -> Setup | Rejection:
    instrument = default_instrument("RELIANCE")
    candidate = Candidate("probe", Side.LONG, 0, bar_time, 1250.0, 1240.0, 1270.0, ("because",))
    return validate(instrument, XNSE, candidate, bar_time + FIVE, ValidationRules())


def test_a_candidate_entering_at_15_20_ist_is_rejected_with_the_reason() -> None:
    result = _validate(utc(2025, 3, 11, 9, 45))  # the 15:15 bar, closing at 15:20 IST
    assert isinstance(result, Rejection)
    assert result.reason == NSE_FLAT
    assert isinstance(_validate(utc(2025, 3, 11, 9, 35)), Setup)  # closes 15:10: still allowed
    assert isinstance(_validate(utc(2025, 3, 11, 9, 55)), Setup)  # closes at the bell: waits for the open


def test_exit_ids_are_plain_session_days_for_24h_markets() -> None:
    times = nanos([utc(2025, 7, 7) + timedelta(hours=k) for k in range(24 * 7)])
    for calendar in (CRYPTO, FX):
        exit_ids, days = calendar.exit_session(times), calendar.session_day(times)
        assert ((exit_ids[1:] != exit_ids[:-1]) == (days[1:] != days[:-1])).all()


# --- Holiday coverage warnings ------------------------------------------------------------------

NOW = utc(2026, 11, 21, 9, 0)


@pytest.mark.parametrize(
    ("known_until", "warned"),
    [
        (date(2026, 12, 31), True),  # 40 days ahead
        (date(2027, 1, 5), True),  # exactly 45 days
        (date(2027, 1, 6), False),
        (date(2026, 6, 30), True),  # already past
        (None, False),  # complete rules
    ],
)
def test_holiday_coverage_warning(known_until: date | None, warned: bool) -> None:
    calendar = XNSE.replace(holidays_known_until=known_until)
    expected = [
        f"XNSE holidays are known only until {known_until}: add [calendars.XNSE].holidays for later dates",
    ]
    assert calendar_warnings([calendar, calendar, FX, CRYPTO], NOW) == (expected if warned else [])


def test_holiday_warnings_are_sorted_by_calendar() -> None:
    soon = date(2026, 12, 1)
    calendars = [XNYS.replace(holidays_known_until=soon), XNSE.replace(holidays_known_until=soon)]
    assert [line.split()[0] for line in calendar_warnings(calendars, NOW)] == ["XNSE", "XNYS"]


# --- Construction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"flat_at": timedelta(hours=16)}, r"flat_at 16:00 must be within the session \(after the 09:15 open"),
        ({"flat_at": timedelta(hours=9, minutes=15)}, "flat_at 09:15 must be within the session"),
        ({"entry_cutoff": timedelta(hours=7)}, r"entry_cutoff must be at least 0 and shorter than the session \(375"),
        ({"entry_cutoff": timedelta(minutes=-1)}, "entry_cutoff must be at least 0"),
        (
            {"early_closes": frozenset({(date(2026, 11, 27), timedelta(hours=16))})},
            "the early close on 2026-11-27 at 16:00 must fall inside the regular session",
        ),
        (
            {
                "early_closes": frozenset(
                    {(date(2026, 11, 27), timedelta(hours=12)), (date(2026, 11, 27), timedelta(hours=13))}
                )
            },
            "a date may have only one early close",
        ),
    ],
)
def test_calendar_refuses_impossible_rules(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"calendar XNSE: {message}"):
        XNSE.replace(**changes)


def test_calendars_stay_hashable_and_comparable() -> None:
    assert XNYS.replace(early_closes=frozenset({(THANKSGIVING_FRIDAY, timedelta(hours=13))})) == XNYS_HALF_DAY
    assert hash(XNYS_HALF_DAY) == hash(XNYS.replace(early_closes=XNYS_HALF_DAY.early_closes))
    assert XNYS_HALF_DAY != XNYS
    assert isinstance(SessionCalendar("X", "UTC", timedelta(hours=1), timedelta(hours=2)), SessionCalendar)
