"""Bars: what is visible when, exact resampling, and no peeking at a higher-timeframe bin before it closes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bars import Bars, align, from_nanos, resample, take_aligned, to_nanos
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.domain import Interval
from engine.indicators import MarketContext
from tests.builders import make_bars
from tests.support import shared_bars, shared_context

T0 = datetime(2025, 1, 6, 3, 45, tzinfo=UTC)  # Monday 09:15 IST, the NSE open
MINUTE = timedelta(minutes=1)


def five_minute_bars(n: int, start: datetime = T0) -> Bars:
    close = 100.0 + np.arange(n, dtype=np.float64)
    return make_bars(close, volume=10.0 * (1 + np.arange(n)), start=start)


# --- Visibility and views -----------------------------------------------------------------------


def test_a_bar_closing_exactly_at_as_of_is_visible_and_the_forming_one_is_not() -> None:
    bars = five_minute_bars(6)  # opens 03:45 .. 04:10
    visible = bars.visible_at(T0 + timedelta(minutes=15))  # 04:00: the 03:55 bar has just closed
    assert [b.strftime("%H:%M") for b in map(visible.bar_time, range(len(visible)))] == ["03:45", "03:50", "03:55"]


def test_one_second_before_a_close_the_bar_is_still_forming() -> None:
    bars = five_minute_bars(6)
    assert len(bars.visible_at(T0 + timedelta(minutes=15) - timedelta(seconds=1))) == 2


def test_nothing_is_visible_before_the_first_close_and_everything_long_after() -> None:
    bars = five_minute_bars(6)
    assert len(bars.visible_at(T0)) == 0
    assert len(bars.visible_at(T0 + timedelta(minutes=4, seconds=59))) == 0
    assert len(bars.visible_at(T0 + timedelta(days=1))) == 6


def test_visible_at_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timestamp must be a timezone-aware UTC datetime"):
        five_minute_bars(3).visible_at(datetime(2025, 1, 6, 4, 0))


def test_head_and_tail_are_views_of_the_right_bars() -> None:
    bars = five_minute_bars(10)
    head, tail = bars.head(4), bars.tail(3)
    assert head.close.tolist() == [100.0, 101.0, 102.0, 103.0]
    assert tail.close.tolist() == [107.0, 108.0, 109.0]
    assert tail.bar_time(0) == T0 + timedelta(minutes=35)
    for view in (head, tail):
        for name in ("time", "open", "high", "low", "close", "volume"):
            assert np.shares_memory(getattr(view, name), getattr(bars, name))


def test_tail_longer_than_history_returns_everything_and_zero_returns_nothing() -> None:
    bars = five_minute_bars(5)
    assert len(bars.tail(50)) == 5
    assert len(bars.tail(0)) == 0
    assert len(bars.head(0)) == 0


def test_close_time_is_open_time_plus_interval() -> None:
    bars = five_minute_bars(3)
    assert [from_nanos(t) for t in bars.close_time] == [T0 + timedelta(minutes=m) for m in (5, 10, 15)]


def test_bar_times_must_strictly_increase() -> None:
    repeated = [T0, T0 + 5 * MINUTE, T0 + 5 * MINUTE]
    with pytest.raises(ValueError, match="bar times must be strictly increasing"):
        make_bars([1.0, 2.0, 3.0], times=repeated)
    backwards = [T0 + 5 * MINUTE, T0]
    with pytest.raises(ValueError, match="bar times must be strictly increasing"):
        make_bars([1.0, 2.0], times=backwards)


def test_every_column_must_match_the_number_of_times() -> None:
    bars = five_minute_bars(3)
    with pytest.raises(ValueError, match="volume has 2 values, expected 3 like time"):
        Bars(bars.interval, bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume[:2])


# --- Frames -------------------------------------------------------------------------------------


def test_frame_round_trip_keeps_every_value_and_instant() -> None:
    bars = shared_bars("RELIANCE", "5m").head(500)
    frame = bars.to_frame()
    assert frame.index.tz is not None
    assert str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp("2025-01-01T03:45:00Z")
    back = Bars.from_frame(frame, Interval.M5)
    for name in ("time", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(back, name), getattr(bars, name))
    assert back.interval is Interval.M5


def test_from_frame_converts_a_local_index_to_the_same_utc_instants() -> None:
    utc = five_minute_bars(4).to_frame()
    local = utc.tz_convert("Asia/Kolkata")
    assert local.index[0].hour == 9  # 09:15 IST
    np.testing.assert_array_equal(Bars.from_frame(local, Interval.M5).time, five_minute_bars(4).time)


def test_from_frame_refuses_a_naive_index() -> None:
    frame = five_minute_bars(3).to_frame().tz_localize(None)
    with pytest.raises(ValueError, match="timezone-aware DatetimeIndex"):
        Bars.from_frame(frame, Interval.M5)


# --- Resampling ---------------------------------------------------------------------------------


def hourly_source() -> Bars:
    """Two full hours of 5-minute bars from 00:00Z with hand-placed extremes."""
    close = [10.0 + i for i in range(24)]
    open_ = [9.5 + i for i in range(24)]
    high = [c + 0.5 for c in close]
    low = [o - 0.5 for o in open_]
    high[7] = 50.0  # first hour's high
    low[3] = 1.0  # first hour's low
    high[20] = 70.0  # second hour's high
    low[12] = 2.0  # second hour's low (the first bar of the hour)
    volume = [100.0] * 12 + [1.0] * 12
    start = datetime(2025, 1, 6, 0, 0, tzinfo=UTC)
    return make_bars(close, open=open_, high=high, low=low, volume=volume, start=start)


def test_resample_5m_to_1h_aggregates_ohlcv_exactly() -> None:
    hourly = resample(hourly_source(), Interval.H1)
    assert hourly.interval is Interval.H1
    assert [from_nanos(t).strftime("%H:%M") for t in hourly.time] == ["00:00", "01:00"]
    assert hourly.open.tolist() == [9.5, 21.5]  # first bar's open of each hour
    assert hourly.high.tolist() == [50.0, 70.0]
    assert hourly.low.tolist() == [1.0, 2.0]
    assert hourly.close.tolist() == [21.0, 33.0]  # last bar's close of each hour
    assert hourly.volume.tolist() == [1200.0, 12.0]


def test_resample_keeps_partial_bins_and_skips_empty_ones() -> None:
    start = datetime(2025, 1, 6, 0, 0, tzinfo=UTC)
    times = [start + timedelta(minutes=m) for m in (0, 5, 10, 125, 130)]  # nothing between 00:15 and 02:05
    bars = make_bars([1.0, 2.0, 3.0, 4.0, 5.0], volume=[1.0, 2.0, 3.0, 4.0, 5.0], times=times)
    hourly = resample(bars, Interval.H1)
    assert [from_nanos(t).strftime("%H:%M") for t in hourly.time] == ["00:00", "02:00"]
    assert hourly.close.tolist() == [3.0, 5.0]
    assert hourly.volume.tolist() == [6.0, 9.0]


def test_resample_origin_shifts_the_bin_edges() -> None:
    bars = five_minute_bars(12, start=datetime(2025, 1, 6, 3, 45, tzinfo=UTC))  # 03:45 .. 04:40
    on_the_hour = resample(bars, Interval.H1)
    on_45 = resample(bars, Interval.H1, origin_ns=45 * 60 * 10**9)
    assert [from_nanos(t).strftime("%H:%M") for t in on_the_hour.time] == ["03:00", "04:00"]
    assert [from_nanos(t).strftime("%H:%M") for t in on_45.time] == ["03:45"]
    assert on_45.volume.tolist() == [float(sum(10 * k for k in range(1, 13)))]


def test_resample_refuses_to_go_to_a_finer_interval_and_handles_empty_bars() -> None:
    with pytest.raises(ValueError, match="cannot resample 1h bars down to 5m"):
        resample(resample(hourly_source(), Interval.H1), Interval.M5)
    empty = resample(five_minute_bars(3).head(0), Interval.H1)
    assert len(empty) == 0
    assert empty.interval is Interval.H1


def test_nse_hourly_bins_sit_on_the_session_open_at_45_past_utc() -> None:
    ctx = shared_context("RELIANCE")
    htf = ctx.higher(Interval.H1)
    minutes = {from_nanos(t).minute for t in htf.bars.time}
    assert minutes == {45}
    # The first session (2025-01-01, 03:45-10:00Z) gives 7 bins, the last holding 09:45, 09:50 and 09:55.
    first_day = [from_nanos(t).strftime("%H:%M") for t in htf.bars.time[:7]]
    assert first_day == ["03:45", "04:45", "05:45", "06:45", "07:45", "08:45", "09:45"]
    base = ctx.bars
    in_last_bin = (base.time >= to_nanos(datetime(2025, 1, 1, 9, 45, tzinfo=UTC))) & (
        base.time < to_nanos(datetime(2025, 1, 1, 10, 0, tzinfo=UTC))
    )
    assert int(in_last_bin.sum()) == 3
    assert htf.bars.volume[6] == base.volume[in_last_bin].sum()
    assert htf.bars.high[6] == base.high[in_last_bin].max()
    assert htf.bars.close[6] == base.close[in_last_bin][-1]


# --- Alignment ----------------------------------------------------------------------------------


def test_align_is_minus_one_until_the_first_bin_has_fully_closed() -> None:
    base = hourly_source()
    index = align(base, resample(base, Interval.H1))
    # Bar 11 (00:55) closes at 01:00 together with the first hour; bar 23 closes the second.
    assert index.tolist() == [-1] * 11 + [0] * 12 + [1]


def test_a_partial_bin_is_not_used_before_its_scheduled_close() -> None:
    # A session that stops at 00:25 leaves the 00:00 bin partial; it must not count until 01:00.
    start = datetime(2025, 1, 6, 0, 0, tzinfo=UTC)
    times = [start + timedelta(minutes=m) for m in (0, 5, 10, 15, 20, 55, 60, 65)]
    bars = make_bars([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], times=times)
    hourly = resample(bars, Interval.H1)
    assert hourly.close.tolist() == [6.0, 8.0]
    assert align(bars, hourly).tolist() == [-1, -1, -1, -1, -1, 0, 0, 0]


def test_a_partial_bin_at_the_end_of_history_is_never_used() -> None:
    base = hourly_source().head(18)  # the second hour has only its first half
    hourly = resample(base, Interval.H1)
    assert len(hourly) == 2
    assert align(base, hourly).max() == 0


def test_take_aligned_puts_nan_where_no_bin_has_closed() -> None:
    values = np.array([5.0, 6.0])
    out = take_aligned(values, np.array([-1, -1, 0, 1, 1], dtype=np.int64))
    np.testing.assert_array_equal(out, [np.nan, np.nan, 5.0, 6.0, 6.0])


def test_same_interval_higher_timeframe_is_the_bars_themselves() -> None:
    ctx = shared_context("EURUSD", n=300)
    same = ctx.higher(Interval.H1)
    assert same.bars is ctx.bars
    np.testing.assert_array_equal(same.on_base(ctx.ind.sma(20)), ctx.ind.sma(20))


# --- No look-ahead on real data -----------------------------------------------------------------

LOOKAHEAD = settings(max_examples=40, deadline=None)


def assert_higher_timeframe_is_causal(symbol: str, higher: Interval, t: int) -> None:
    full = shared_context(symbol)
    instrument = default_instrument(symbol)
    truncated = MarketContext(instrument, full.bars.head(t + 1), get_calendar(instrument.calendar))
    for period in (50, 10):
        full_htf, cut_htf = full.higher(higher), truncated.higher(higher)
        on_full = full_htf.on_base(full_htf.ind.sma(period))[: t + 1]
        on_cut = cut_htf.on_base(cut_htf.ind.sma(period))
        np.testing.assert_array_equal(on_cut, on_full, err_msg=f"{symbol} sma{period} differs when cut at {t}")
        ema_full = full_htf.on_base(full_htf.ind.ema(period))[: t + 1]
        np.testing.assert_array_equal(cut_htf.on_base(cut_htf.ind.ema(period)), ema_full)
    assert np.isfinite(on_full).any() or t < 600  # the comparison is not vacuous once warmed up


@LOOKAHEAD
@given(t=st.integers(min_value=0, max_value=18_011))
def test_nse_hourly_view_never_uses_bars_after_the_cut(t: int) -> None:
    assert_higher_timeframe_is_causal("RELIANCE", Interval.H1, t)


@LOOKAHEAD
@given(t=st.integers(min_value=0, max_value=9_997))
def test_fx_four_hour_view_never_uses_bars_after_the_cut(t: int) -> None:
    assert_higher_timeframe_is_causal("EURUSD", Interval.H4, t)


@pytest.mark.parametrize("t", [0, 73, 74, 75, 76, 80, 150, 17_999, 18_011])
def test_nse_hourly_view_is_causal_at_session_edges(t: int) -> None:
    # 75 bars per session: t=74 is the 09:55 bar that ends the first day's partial 09:45 bin.
    assert_higher_timeframe_is_causal("RELIANCE", Interval.H1, t)
