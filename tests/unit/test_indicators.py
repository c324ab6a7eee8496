"""Indicators: shared and computed once, identical to TA-Lib, and causal."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain import Interval
from engine.indicators import Indicators, MarketContext, crossed_above, crossed_below, shift
from tests.builders import make_bars, make_context
from tests.support import shared_bars, shared_context


@pytest.fixture(scope="module")
def reliance() -> MarketContext:
    return shared_context("RELIANCE")


# --- Memoisation --------------------------------------------------------------------------------


def test_the_same_indicator_is_computed_once_and_shared(reliance: MarketContext) -> None:
    ind = Indicators(reliance.bars)
    assert ind.rsi(14) is ind.rsi(14)
    assert ind.rsi() is ind.rsi(14)
    assert ind.atr(14) is ind.atr()
    assert ind.macd() is ind.macd(12, 26, 9)
    assert ind.bbands(20, 2.0) is ind.bbands()
    assert ind.pattern("CDLENGULFING") is ind.pattern("CDLENGULFING")


def test_different_parameters_are_different_indicators(reliance: MarketContext) -> None:
    ind = Indicators(reliance.bars)
    assert ind.rsi(7) is not ind.rsi(14)
    assert not np.array_equal(ind.ema(20), ind.ema(50), equal_nan=True)
    assert ind.bbands(20, 2.0)[0][-1] > ind.bbands(20, 1.0)[0][-1]


def test_the_higher_timeframe_and_session_arrays_are_built_once(reliance: MarketContext) -> None:
    assert reliance.higher(Interval.H1) is reliance.higher(Interval.H1)
    assert reliance.higher(Interval.H1).ind.sma(50) is reliance.higher(Interval.H1).ind.sma(50)
    assert reliance.session_day is reliance.session_day
    assert reliance.minutes_from_open is reliance.minutes_from_open


# --- Same numbers as TA-Lib ---------------------------------------------------------------------


def test_values_equal_direct_talib_calls_on_real_data(reliance: MarketContext) -> None:
    b, ind = reliance.bars, Indicators(reliance.bars)
    same = np.testing.assert_array_equal
    same(ind.rsi(14), talib.RSI(b.close, timeperiod=14))
    same(ind.atr(14), talib.ATR(b.high, b.low, b.close, timeperiod=14))
    same(ind.ema(50), talib.EMA(b.close, timeperiod=50))
    same(ind.sma(20), talib.SMA(b.close, timeperiod=20))
    same(ind.volume_sma(20), talib.SMA(b.volume, timeperiod=20))
    same(ind.highest(100), talib.MAX(b.high, timeperiod=100))
    same(ind.lowest(100), talib.MIN(b.low, timeperiod=100))
    for mine, theirs in zip(ind.macd(), talib.MACD(b.close, 12, 26, 9), strict=True):
        same(mine, theirs)
    for mine, theirs in zip(ind.bbands(20, 2.0), talib.BBANDS(b.close, 20, 2.0, 2.0, 0), strict=True):
        same(mine, theirs)


def test_candlestick_patterns_are_reduced_to_their_direction(reliance: MarketContext) -> None:
    b = reliance.bars
    raw = talib.CDLENGULFING(b.open, b.high, b.low, b.close)
    pattern = Indicators(b).pattern("CDLENGULFING")
    assert set(np.unique(pattern).tolist()) == {-1, 0, 1}  # real data has both kinds
    np.testing.assert_array_equal(pattern == 1, raw > 0)
    np.testing.assert_array_equal(pattern == -1, raw < 0)


def test_highest_includes_the_current_bar() -> None:
    bars = make_bars([10.0, 11.0, 12.0, 9.0], high=[10.0, 15.0, 12.0, 9.5])
    np.testing.assert_array_equal(Indicators(bars).highest(2), [np.nan, 15.0, 15.0, 12.0])
    np.testing.assert_array_equal(Indicators(bars).lowest(2), [np.nan, 10.0, 10.0, 9.0])  # lows 10, 10, 11, 9


@pytest.mark.parametrize("cut", [40, 500, 5_000])
def test_indicators_on_a_truncated_history_match_the_full_history(reliance: MarketContext, cut: int) -> None:
    full, head = Indicators(reliance.bars), Indicators(reliance.bars.head(cut))
    np.testing.assert_array_equal(head.rsi(14), full.rsi(14)[:cut])
    np.testing.assert_array_equal(head.atr(14), full.atr(14)[:cut])
    np.testing.assert_array_equal(head.macd()[2], full.macd()[2][:cut])
    np.testing.assert_array_equal(head.pattern("CDLHAMMER"), full.pattern("CDLHAMMER")[:cut])


# --- percentile_rank ----------------------------------------------------------------------------


def rank(values: list[float], window: int) -> list[float]:
    bars = make_bars(np.ones(len(values)))
    return Indicators(bars).percentile_rank("v", np.asarray(values, dtype=np.float64), window).tolist()


def test_percentile_rank_of_rising_and_falling_values() -> None:
    assert rank([1, 2, 3, 4, 5], 5)[-1] == 1.0  # the highest of its window
    assert rank([5, 4, 3, 2, 1], 5)[-1] == 0.2  # only itself is <= it
    assert rank([3, 1, 4, 1, 5, 9, 2], 4)[3:] == [0.5, 1.0, 1.0, 0.5]  # last: 1 and 2 of 1, 5, 9, 2


def test_percentile_rank_is_nan_until_the_window_is_full() -> None:
    out = rank([1, 2, 3, 4, 5, 6], 4)
    assert np.isnan(out[:3]).all()
    assert out[3:] == [1.0, 1.0, 1.0]
    assert np.isnan(rank([1.0, 2.0], 4)).all()


def test_percentile_rank_ignores_nans_but_needs_half_a_window_of_values() -> None:
    nan = float("nan")
    assert rank([nan, nan, 1.0, 2.0], 4)[-1] == 1.0  # 2 valid of 4 is enough
    assert np.isnan(rank([nan, nan, nan, 2.0], 4)[-1])  # 1 valid is not
    assert np.isnan(rank([1.0, 2.0, 3.0, nan], 4)[-1])  # a missing current value has no rank


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=1, max_value=3_000))
def test_percentile_rank_is_causal_and_within_0_and_1(cut: int) -> None:
    bars = shared_bars("EURUSD", "1h").head(3_000)
    atr = Indicators(bars).atr(14)
    full = Indicators(bars).percentile_rank("atr14", atr, 100)
    head = Indicators(bars.head(cut)).percentile_rank("atr14", atr[:cut], 100)
    np.testing.assert_array_equal(head, full[:cut])
    finite = full[np.isfinite(full)]
    assert len(finite) > 2_800
    assert finite.min() >= 0.01
    assert finite.max() <= 1.0


# --- Crosses and shifts -------------------------------------------------------------------------


def test_crossed_above_a_level_fires_only_on_the_crossing_bar() -> None:
    series = np.array([1.0, 2.0, 3.0, 2.0, 3.0, 3.5])
    assert crossed_above(series, 2.5).tolist() == [False, False, True, False, True, False]
    assert crossed_below(series, 2.5).tolist() == [False, False, False, True, False, False]


def test_touching_the_level_is_not_a_cross_but_leaving_it_is() -> None:
    series = np.array([1.0, 2.5, 3.0, 2.5, 2.0])
    assert crossed_above(series, 2.5).tolist() == [False, False, True, False, False]
    assert crossed_below(series, 2.5).tolist() == [False, False, False, False, True]


def test_crossing_a_moving_line() -> None:
    fast = np.array([1.0, 2.0, 4.0, 5.0, 3.0])
    slow = np.array([3.0, 3.0, 3.5, 4.0, 4.0])
    assert crossed_above(fast, slow).tolist() == [False, False, True, False, False]
    assert crossed_below(fast, slow).tolist() == [False, False, False, False, True]


def test_nan_never_crosses() -> None:
    nan = np.nan
    series = np.array([nan, 3.0, nan, 1.0, 3.0])
    assert crossed_above(series, 2.0).tolist() == [False, False, False, False, True]
    assert crossed_below(series, 2.0).tolist() == [False, False, False, False, False]


def test_shift_looks_back_n_bars() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(shift(values), [np.nan, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(shift(values, 3), [np.nan, np.nan, np.nan, 1.0])
    np.testing.assert_array_equal(shift(values, 0), values)
    assert np.isnan(shift(values, 4)).all()
    assert np.isnan(shift(values, 10)).all()


# --- MarketContext ------------------------------------------------------------------------------


def test_market_context_exposes_its_instrument_bars_and_length() -> None:
    bars = make_bars([100.0, 101.0, 102.0], interval=Interval.M5)
    ctx = make_context(bars, symbol="INFY")
    assert ctx.instrument.symbol == "INFY"
    assert ctx.instrument.interval is Interval.M5
    assert len(ctx) == 3
    assert ctx.ind.bars is bars
