"""The NIFTY weekly-zone rules (spec nifty-weekly-zones.md) on hand-made weeks, each rule by its numbers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from engine.bars import Bars, to_nanos
from engine.calendars import get_calendar
from engine.domain import Interval, Side
from engine.session_hours import nse_hours, session_hours
from engine.trading import ExitReason
from engine.weekly_zones import (
    Bias,
    WeekContext,
    ZoneRule,
    expiries,
    find_zone_exit,
    live_expiry,
    position_expiry,
    scan,
    scheduled_expiry,
    week_context,
)

Bar = tuple[float, float, float, float]  # open, high, low, close
FLAT: Bar = (20000.0, 20100.0, 19900.0, 20000.0)
IST = timedelta(hours=5, minutes=30)


def hour_open(day: date, hour: int) -> datetime:
    """UTC open time of the NSE hourly bar `hour` (0 = 09:15 IST) of `day`."""
    return datetime(day.year, day.month, day.day, 9, 15, tzinfo=UTC) - IST + timedelta(hours=hour)


def hours_of(days: dict[date, list[Bar]]):
    """NSE session hours from per-day lists of up to seven hourly bars."""
    times, rows = [], []
    for day in sorted(days):
        for hour, bar in enumerate(days[day]):
            times.append(to_nanos(hour_open(day, hour)))
            rows.append(bar)
    a = np.array(rows, dtype=np.float64)
    bars = Bars(Interval.H1, np.array(times, np.int64), a[:, 0], a[:, 1], a[:, 2], a[:, 3], np.zeros(len(rows)))
    return session_hours(bars)


def flat_day(n: int = 7) -> list[Bar]:
    return [FLAT] * n


NEUTRAL_PREV = {date(2025, 1, 6): flat_day()}  # PWH 20100, PWL 19900, PWC = Max4 = Min4 = 20000: neutral


def bearish_prev() -> dict[date, list[Bar]]:
    """One day whose morning block runs 19000 -> 19500 and afternoon 19500 -> 20000: PWC = Max4, bearish."""
    morning = [(19000.0, 19200.0, 18950.0, 19100.0), *[(19100.0, 19600.0, 19050.0, 19500.0)] * 3]
    afternoon = [(19500.0, 19800.0, 19450.0, 19700.0), (19700.0, 19950.0, 19650.0, 19900.0)]
    afternoon.append((19900.0, 20050.0, 19850.0, 20000.0))
    return {date(2025, 1, 10): morning + afternoon}


# §1 hourly bars -------------------------------------------------------------------------------------------


def five_minute_day(day: date, first: str = "09:15", bars: int = 75, base: float = 100.0) -> list[tuple[int, float]]:
    h, m = map(int, first.split(":"))
    start = datetime(day.year, day.month, day.day, h, m, tzinfo=UTC) - IST
    return [(to_nanos(start + timedelta(minutes=5 * k)), base + k) for k in range(bars)]


def five_bars(rows: list[tuple[int, float]]) -> Bars:
    t = np.array([r[0] for r in rows], np.int64)
    c = np.array([r[1] for r in rows])
    return Bars(Interval.M5, t, c - 0.5, c + 1.0, c - 1.0, c, np.ones(len(rows)))


def test_hourly_bars_start_at_0915_and_the_last_closes_at_1530() -> None:
    hours = nse_hours(five_bars(five_minute_day(date(2025, 1, 6))))
    assert len(hours) == 7
    assert [hours.bars.bar_time(i).strftime("%H:%M") for i in range(7)] == [
        "03:45", "04:45", "05:45", "06:45", "07:45", "08:45", "09:45",
    ]  # fmt: skip
    assert hours.close_time(6) == datetime(2025, 1, 6, 10, 0, tzinfo=UTC)  # 15:30 IST
    assert hours.close_time(0) == datetime(2025, 1, 6, 4, 45, tzinfo=UTC)
    # the first hour holds 5-minute bars 0..11: open of the first, close of the last, max high, min low
    assert hours.bars.open[0] == 99.5 and hours.bars.close[0] == 111.0
    assert hours.bars.high[0] == 112.0 and hours.bars.low[0] == 99.0
    assert hours.bars.open[6] == 100.0 + 72 - 0.5 and hours.bars.close[6] == 174.0  # three bars: 15:15-15:25
    assert list(hours.hour) == list(range(7))


def test_weekend_and_late_opening_sessions_are_dropped() -> None:
    rows = five_minute_day(date(2025, 2, 1))  # the Budget Saturday
    rows += five_minute_day(date(2025, 10, 21), first="13:45", bars=12)  # the Muhurat session
    rows += five_minute_day(date(2025, 10, 22))
    hours = nse_hours(five_bars(rows))
    assert {hours.date_of(i) for i in range(len(hours))} == {date(2025, 10, 22)}


def test_hourly_bars_off_the_nse_grid_are_refused_by_name() -> None:
    t = np.array([to_nanos(datetime(2025, 1, 6, 4, 0, tzinfo=UTC))], np.int64)
    one = np.array([1.0])
    with pytest.raises(ValueError, match="not on the NSE grid"):
        session_hours(Bars(Interval.H1, t, one, one, one, one, one))


# §3 context -----------------------------------------------------------------------------------------------


def test_context_zones_margins_and_bias_from_the_previous_week() -> None:
    hours = hours_of(bearish_prev())
    ctx = week_context(hours, 0, len(hours))
    assert (ctx.pwh, ctx.pwl, ctx.pwc) == (20050.0, 18950.0, 20000.0)
    assert (ctx.max4, ctx.min4) == (20000.0, 19000.0)  # blocks 09:15-13:15 (19000->19500), 13:15-15:30
    assert (ctx.rt, ctx.rb, ctx.st, ctx.sb) == (20050.0, 20000.0, 19000.0, 18950.0)
    assert ctx.margin_high == 150.0 and ctx.margin_low == 150.0
    assert ctx.bias is Bias.BEARISH
    assert WeekContext(100, 90, 95, 98, 92).bias is Bias.NEUTRAL
    assert WeekContext(100, 90, 93, 98, 92).bias is Bias.BULLISH
    assert WeekContext(100.0, 90.0, 95.0, 100.0, 90.0).margin_high == 0.25  # at least five ticks


# §4-5 rules -----------------------------------------------------------------------------------------------


def test_s7_fires_on_a_first_day_close_above_the_first_bar_high() -> None:
    week = {date(2025, 1, 13): [(20000.0, 20050.0, 19950.0, 20010.0), (20010.0, 20200.0, 20000.0, 20150.0)]}
    [signal] = scan(hours_of(NEUTRAL_PREV | week))
    assert (signal.rule, signal.side, signal.entry, signal.stop) == (ZoneRule.S7, Side.LONG, 20150.0, 19950.0)
    assert signal.index == 8  # the week's bar 2


def test_s7_is_refused_when_the_close_is_within_040_percent_below_pwh() -> None:
    prev = {date(2025, 1, 6): [*flat_day(6), (20000.0, 20300.0, 19900.0, 20000.0)]}  # PWH 20300
    week = {date(2025, 1, 13): [(20000.0, 20050.0, 19950.0, 20010.0), (20010.0, 20240.0, 20000.0, 20230.0)]}
    assert scan(hours_of(prev | week)) == []  # (20300 - 20230) / 20230 = 0.35 % < 0.40 %; the trigger is spent


def test_a_later_day_breakout_needs_a_level_set_by_a_green_bar_then_a_close_above_it() -> None:
    first_day = [(20000.0, 20050.0, 19950.0, 20010.0), *[(20010.0, 20040.0, 19990.0, 20020.0)] * 6]
    setter = (20020.0, 20120.0, 20010.0, 20080.0)  # green, close > F.h, high >= maxH: L = 20120, no signal
    below = (20080.0, 20110.0, 20060.0, 20100.0)  # 20100 <= L
    above = (20100.0, 20160.0, 20090.0, 20130.0)  # 20130 > L: fires
    week = {date(2025, 1, 13): first_day, date(2025, 1, 14): [setter, below, above]}
    [signal] = scan(hours_of(NEUTRAL_PREV | week))
    assert signal.rule is ZoneRule.S7 and signal.entry == 20130.0
    assert signal.index == 7 + 7 + 2


def test_s8_fires_on_a_breakdown_after_the_week_touched_the_resistance_bottom() -> None:
    week = {date(2025, 1, 13): [(20000.0, 20050.0, 19950.0, 19990.0), (19990.0, 20000.0, 19800.0, 19850.0)]}
    [signal] = scan(hours_of(NEUTRAL_PREV | week))  # F.h 20050 >= RB 20000; 19850 < RB, < minL, < minC
    assert (signal.rule, signal.side, signal.stop) == (ZoneRule.S8, Side.SHORT, 20050.0)


def test_s1_bear_trap_on_bar_two() -> None:
    week = {date(2025, 1, 13): [(19950.0, 19960.0, 19850.0, 19880.0), (19880.0, 19920.0, 19870.0, 19900.0)]}
    [signal] = scan(hours_of(NEUTRAL_PREV | week))  # F.o >= SB 19900 > F.c; C.c > F.l
    assert (signal.rule, signal.stop) == (ZoneRule.S1, 19850.0 - 70.0)


def test_s4_takes_the_breakout_when_the_bias_is_bearish_and_the_week_gapped_above_rt() -> None:
    week = {date(2025, 1, 13): [(20100.0, 20150.0, 20080.0, 20120.0), (20120.0, 20300.0, 20110.0, 20250.0)]}
    [signal] = scan(hours_of(bearish_prev() | week))
    assert (signal.rule, signal.side, signal.stop) == (ZoneRule.S4, Side.LONG, 20080.0)


def test_s3_resistance_hold_on_bar_two_when_bearish() -> None:
    week = {date(2025, 1, 13): [(19990.0, 20030.0, 19900.0, 19950.0), (19950.0, 19980.0, 19880.0, 19900.0)]}
    [signal] = scan(hours_of(bearish_prev() | week))  # F.h >= RB 20000, F.c <= PWH; C.c < F.h, < RB
    assert (signal.rule, signal.side, signal.stop) == (ZoneRule.S3, Side.SHORT, 20050.0)


def test_one_signal_per_week_and_none_without_the_previous_week() -> None:
    bar1, bar2 = (20000.0, 20050.0, 19950.0, 20010.0), (20010.0, 20200.0, 20000.0, 20150.0)
    week = {date(2025, 1, 13): [bar1, bar2, (20150.0, 20400.0, 20140.0, 20390.0), *flat_day(4)]}
    assert len(scan(hours_of(NEUTRAL_PREV | week))) == 1
    later = {date(2025, 1, 27): [bar1, bar2]}  # the week of 01-20 has no bars
    assert [s.index for s in scan(hours_of(NEUTRAL_PREV | week | later))] == [8]


# §6 exits -------------------------------------------------------------------------------------------------

S7_WEEK = [(20000.0, 20050.0, 19950.0, 20010.0), (20010.0, 20200.0, 20000.0, 20150.0)]


def zone_week(rest: dict[date, list[Bar]]):
    hours = hours_of(NEUTRAL_PREV | {date(2025, 1, 13): S7_WEEK + [(20150.0, 20160.0, 20140.0, 20150.0)] * 5} | rest)
    [signal] = scan(hours)
    return hours, signal


CALM: Bar = (20150.0, 20160.0, 20140.0, 20150.0)


def test_a_low_through_the_stop_does_not_stop_only_a_close_does() -> None:
    wick = (20150.0, 20160.0, 19000.0, 20100.0)  # low far below the stop 19950, close above
    hours, signal = zone_week({date(2025, 1, 14): [wick]})
    assert find_zone_exit(hours, signal, expiries(hours)) is None  # still open: the expiry is not known yet
    hours, signal = zone_week({date(2025, 1, 14): [wick, (20100.0, 20110.0, 19900.0, 19940.0)]})
    found = find_zone_exit(hours, signal, expiries(hours))
    assert found is not None and found.reason is ExitReason.STOP and found.price == 19940.0
    assert found.at == hours.close_time(7 + 7 + 1)


def test_not_stopped_exits_at_the_close_of_the_expiry_days_last_bar() -> None:
    days = {date(2025, 1, d): [CALM] * 7 for d in (14, 15, 16, 17)}
    hours, signal = zone_week(days)
    found = find_zone_exit(hours, signal, expiries(hours))
    assert found is not None and found.reason is ExitReason.EXPIRY
    assert found.at == datetime(2025, 1, 16, 10, 0, tzinfo=UTC)  # Thursday 15:30 IST


def test_an_expiry_not_reached_by_the_data_leaves_the_trade_open() -> None:
    hours, signal = zone_week({date(2025, 1, 15): [CALM] * 7})
    # the week of 01-06 had only its Monday: that is its expiry; the week of 01-13's Thursday is after the data
    assert [e.day for e in expiries(hours)] == [date(2025, 1, 6)]
    assert find_zone_exit(hours, signal, expiries(hours)) is None


def test_expiry_days_thursday_then_tuesday_and_the_earlier_day_when_a_holiday() -> None:
    days = {date(2025, 8, 25): flat_day(), date(2025, 8, 27): flat_day()}  # Thursday 08-28 absent
    days |= {date(2025, 8, 29): flat_day(), date(2025, 9, 1): flat_day(), date(2025, 9, 2): flat_day()}
    hours = hours_of(days)
    assert [e.day for e in expiries(hours)] == [date(2025, 8, 27), date(2025, 9, 2)]


def test_a_signal_on_the_expiry_bar_rolls_to_the_next_weeks_expiry() -> None:
    setter = (20020.0, 20120.0, 20010.0, 20080.0)  # sets the breakout level 20120
    thursday = [setter] + [(20080.0, 20100.0, 20070.0, 20090.0)] * 5 + [(20090.0, 20300.0, 20080.0, 20250.0)]
    days = {date(2025, 1, 13): [(20000.0, 20050.0, 19950.0, 20010.0)] + [(20010.0, 20040.0, 20000.0, 20020.0)] * 6}
    days |= {date(2025, 1, 16): thursday, date(2025, 1, 23): [CALM] * 7}
    hours = hours_of(NEUTRAL_PREV | days)
    [signal] = scan(hours)
    assert hours.date_of(signal.index) == date(2025, 1, 16) and int(hours.hour[signal.index]) == 6
    assert position_expiry(hours, signal.index, expiries(hours)).day == date(2025, 1, 23)


def test_the_optional_wednesday_exit_at_the_1415_bar() -> None:
    days = {date(2025, 1, d): [CALM] * 7 for d in (14, 15, 16)}
    hours, signal = zone_week(days)
    found = find_zone_exit(hours, signal, expiries(hours), wednesday_exit=True)
    assert found is not None and found.reason is ExitReason.TIME
    assert found.at == datetime(2025, 1, 15, 9, 45, tzinfo=UTC)  # the 14:15 bar closes 15:15 IST
    stopped_first = {**days, date(2025, 1, 15): [(20150.0, 20150.0, 19000.0, 19900.0)] + [CALM] * 6}
    hours, signal = zone_week(stopped_first)
    found = find_zone_exit(hours, signal, expiries(hours), wednesday_exit=True)
    assert found is not None and found.reason is ExitReason.STOP


def test_live_expiry_follows_the_exchange_calendar_and_rolls_after_the_expiry_bar() -> None:
    nse = get_calendar("XNSE").with_holidays(frozenset({date(2025, 4, 10)}))  # Mahavir Jayanti

    def close(day: date) -> datetime | None:
        bounds = nse.session(day)
        return None if bounds is None else bounds[1]

    assert scheduled_expiry(date(2025, 4, 7), nse.is_trading_day) == date(2025, 4, 9)  # 04-10 a holiday
    assert scheduled_expiry(date(2025, 9, 1), nse.is_trading_day) == date(2025, 9, 2)  # Tuesdays from September
    monday = datetime(2025, 3, 10, 9, 45, tzinfo=UTC)
    assert live_expiry(date(2025, 3, 10), monday, close) == date(2025, 3, 13)
    at_expiry_close = datetime(2025, 3, 13, 10, 0, tzinfo=UTC)  # the 15:15 bar of the expiry day closes 15:30
    assert live_expiry(date(2025, 3, 13), at_expiry_close, close) == date(2025, 3, 20)
