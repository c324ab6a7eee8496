"""Indicators: computed once and shared, TA-Lib's numbers, window averages independent of the history's start."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.catalog import default_instrument
from engine.domain import Interval
from engine.indicators import (
    CONVERGENCE,
    Indicators,
    MarketContext,
    crossed_above,
    crossed_below,
    ema_history,
    higher_bars,
    macd_history,
    shift,
    wilder_history,
    window_sum,
)
from engine.quality import Component, QualityScorer, QualityWeights
from engine.strategy import build_strategy
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
    same(ind.highest(100), talib.MAX(b.high, timeperiod=100))
    same(ind.lowest(100), talib.MIN(b.low, timeperiod=100))
    for mine, theirs in zip(ind.macd(), talib.MACD(b.close, 12, 26, 9), strict=True):
        same(mine, theirs)
    # Window averages are computed window by window (see the module docstring): TA-Lib's to rounding.
    close = np.testing.assert_allclose
    close(ind.sma(20), talib.SMA(b.close, timeperiod=20), rtol=1e-12)
    close(ind.volume_sma(20), talib.SMA(b.volume, timeperiod=20), rtol=1e-12)
    for mine, theirs in zip(ind.bbands(20, 2.0), talib.BBANDS(b.close, 20, 2.0, 2.0, 0), strict=True):
        close(mine, theirs, rtol=1e-9)


def test_window_averages_do_not_depend_on_where_the_history_starts(reliance: MarketContext) -> None:
    b = reliance.bars
    full = Indicators(b)
    for start in (1, 7, 333, 5_000):
        part = Indicators(b.window(start, len(b)))
        for values, tail in (
            (full.sma(50), part.sma(50)),
            (full.volume_sma(20), part.volume_sma(20)),
            *zip(full.bbands(20, 2.0), part.bbands(20, 2.0), strict=True),
        ):
            np.testing.assert_array_equal(values[start + 60 :], tail[60:])  # bit for bit, not just close
    # TA-Lib's running sum is not: on this file its SMA50 differs in the last bits once the start moves.
    moved = talib.SMA(b.close[333:], timeperiod=50)[60:]
    assert not np.array_equal(talib.SMA(b.close, timeperiod=50)[333 + 60 :], moved)


def test_window_sum_adds_each_window_oldest_first() -> None:
    values = np.array([1.0, 2.0, 4.0, 8.0])
    np.testing.assert_array_equal(window_sum(values, 2), [np.nan, 3.0, 6.0, 12.0])
    np.testing.assert_array_equal(window_sum(values, 4), [np.nan, np.nan, np.nan, 15.0])
    assert np.isnan(window_sum(values, 5)).all()
    with pytest.raises(ValueError, match="at least 1 bar"):
        window_sum(values, 0)


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


# --- Declared histories -------------------------------------------------------------------------


@pytest.mark.parametrize("period", [2, 14, 20, 50, 200])
def test_ema_history_is_the_first_bar_where_the_seed_weighs_at_most_the_tolerance(period: int) -> None:
    keep = 1 - 2 / (period + 1)
    after_seed = ema_history(period) - (period - 1)
    assert keep**after_seed <= CONVERGENCE < keep ** (after_seed - 1)


def test_an_ema_started_a_declared_history_earlier_agrees_with_one_over_all_history() -> None:
    close = shared_bars("BTCUSDT", "1h").close
    full = talib.EMA(close, timeperiod=200)
    history = ema_history(200)
    start = len(close) - history
    late = talib.EMA(close[start:], timeperiod=200)
    gap = abs(late[-1] - full[-1]) / full[-1]
    assert gap < 1e-10  # within CONVERGENCE of the seeds' gap (a few percent of the price)


def test_the_slow_higher_timeframe_ema_sets_the_histories() -> None:
    assert (ema_history(200), wilder_history(14), macd_history()) == (2272, 294, 396)
    assert higher_bars(Interval.H1, Interval.H4, 2272) == 9092  # 2,273 4h bins of at most four 1h bars
    assert QualityScorer().history(Interval.H1) == 9092  # the score reads the same EMA200 of 4h bins
    assert QualityScorer(QualityWeights({Component.MOMENTUM: 1.0})).history(Interval.H1) == macd_history()
    eurusd = default_instrument("EURUSD")
    assert build_strategy("trend_pullback").history(eurusd) == 9092
    assert build_strategy("pattern_reversal").history(eurusd) == 297
    assert build_strategy("defining_order").history(default_instrument("RELIANCE")) == 612 + 288
