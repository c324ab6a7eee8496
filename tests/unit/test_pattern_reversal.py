"""Unit tests of the pattern_reversal strategy on small hand-built bars."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import talib
from talib import abstract

from engine.catalog import DEFAULT_WATCHLIST
from engine.domain import Side
from engine.indicators import MarketContext
from engine.strategies.pattern_reversal import (
    CANDLESTICK_FUNCTIONS,
    CANDLESTICK_LOOKBACKS,
    PATTERN_GROUP,
    PatternReversal,
    PatternReversalParams,
)
from engine.strategy import build_strategy
from tests.builders import make_bars, make_context

Candle = tuple[float, float, float, float]  # open, high, low, close

K = 55  # the pattern bar of the scenarios built on a 54-bar background
TROUGH_LOW = 97.3  # lowest low of the background (sine troughs at bars 15, 35)


def background(n: int) -> list[Candle]:
    """White candles on a sine wave (100 +/- 2, period 20) with shadows too long for any of the patterns."""
    closes = 100.0 + 2.0 * np.sin(2 * np.pi * np.arange(n) / 20)
    return [(c - 0.3, c + 0.4, c - 0.7, c) for c in closes.tolist()]


def context(rows: Sequence[Candle]) -> MarketContext:
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return make_context(make_bars(c, open=o, high=h, low=lo))


def mirrored(rows: Sequence[Candle], axis: float = 200.0) -> list[Candle]:
    """Reflect prices about `axis`: white becomes black, highs become lows."""
    return [(axis - o, axis - lo, axis - h, axis - c) for o, h, lo, c in rows]


def with_low(rows: Sequence[Candle], j: int, low: float) -> list[Candle]:
    out = list(rows)
    o, h, _, c = out[j]
    out[j] = (o, h, low, c)
    return out


BLACK = (98.35, 98.7, 97.6, 97.9)
ENGULFING_WHITE = (97.8, 99.2, 97.5, 99.0)
# Bullish engulfing at the trough: pattern low 97.50, 0.2 above the 50-bar support 97.30, above the lower band.
AT_SUPPORT = [*background(54), BLACK, ENGULFING_WHITE]
# The same kind of engulfing in the middle of the range, 1.2 ATR above support and far above the band.
MID_AIR = [*background(60), (100.2, 100.3, 99.1, 99.4), (99.3, 100.6, 99.0, 100.5)]
# A sharp drop below the lower band with the 50-bar support (a spike low of 93) far away.
AT_BAND = [*with_low(background(54), 20, 93.0), (98.6, 98.7, 96.3, 96.5), (96.4, 98.9, 96.0, 98.7)]
# A small black hammer that also engulfs a tiny white candle: bullish and bearish at once, at support.
CONFLICT = [*background(54), (98.0, 98.1, 97.95, 98.05), (98.15, 98.16, 97.6, 97.95)]


def run(rows: Sequence[Candle], **params: object) -> tuple[MarketContext, PatternReversal]:
    ctx = context(rows)
    return ctx, PatternReversal(PatternReversalParams(**params))  # type: ignore[arg-type]


def expected_levels(ctx: MarketContext, k: int, side: Side) -> tuple[float, float, float, float]:
    """Pattern extreme, support/resistance, stop and target at bar k, computed from the documented rules."""
    b = ctx.bars
    atr = float(talib.ATR(b.high, b.low, b.close, timeperiod=14)[k])
    if side is Side.LONG:
        extreme, level = float(b.low[k - 2 : k + 1].min()), float(b.low[k - 52 : k - 2].min())
        stop = extreme - 0.1 * atr
    else:
        extreme, level = float(b.high[k - 2 : k + 1].max()), float(b.high[k - 52 : k - 2].max())
        stop = extreme + 0.1 * atr
    entry = float(b.close[k])
    return extreme, level, stop, entry + 2.0 * (entry - stop)


def test_bullish_engulfing_at_support_fires_on_the_pattern_bar_not_before() -> None:
    ctx, strategy = run(AT_SUPPORT)
    sig = strategy.signals(ctx)

    assert ctx.ind.pattern("CDLENGULFING")[K] == 1
    assert sig.direction[K - 1] == 0
    assert sig.direction[K] == 1
    assert sig.fired().tolist() == [K]


def test_long_stop_and_target_follow_the_documented_formula() -> None:
    ctx, strategy = run(AT_SUPPORT)
    sig = strategy.signals(ctx)
    _, _, stop, target = expected_levels(ctx, K, Side.LONG)

    assert sig.entry[K] == ctx.bars.close[K]
    assert sig.stop[K] == pytest.approx(stop, rel=1e-12)
    assert sig.target[K] == pytest.approx(target, rel=1e-12)
    assert sig.target[K] - sig.entry[K] == pytest.approx(2.0 * (sig.entry[K] - sig.stop[K]), rel=1e-12)
    assert np.isnan(sig.stop[K - 1]) and np.isnan(sig.target[K - 1]) and np.isnan(sig.entry[K - 1])


def test_bearish_mirror_at_resistance_fires_short_with_the_stop_above() -> None:
    ctx, strategy = run(mirrored(AT_SUPPORT))
    sig = strategy.signals(ctx)
    _, _, stop, target = expected_levels(ctx, K, Side.SHORT)

    assert ctx.ind.pattern("CDLENGULFING")[K] == -1
    assert sig.direction[K - 1] == 0
    assert sig.direction[K] == -1
    assert sig.stop[K] == pytest.approx(stop, rel=1e-12)
    assert sig.target[K] == pytest.approx(target, rel=1e-12)
    assert sig.stop[K] > sig.entry[K] > sig.target[K]


def test_pattern_away_from_any_level_does_not_fire() -> None:
    ctx, strategy = run(MID_AIR)
    k = len(MID_AIR) - 1
    extreme, support, _, _ = expected_levels(ctx, k, Side.LONG)
    atr = ctx.ind.atr(14)[k]
    lower_band = ctx.ind.bbands(20, 2.0)[2][k]

    assert ctx.ind.pattern("CDLENGULFING")[k] == 1
    assert extreme - support > 0.5 * atr
    assert extreme > lower_band
    assert strategy.signals(ctx).direction[k] == 0


def test_level_tolerance_in_atr_is_the_boundary() -> None:
    ctx, _ = run(AT_SUPPORT)
    extreme, support, _, _ = expected_levels(ctx, K, Side.LONG)
    distance_atr = (extreme - support) / ctx.ind.atr(14)[K]
    assert extreme > ctx.ind.bbands(20, 2.0)[2][K]  # the band alone would not qualify this bar

    inside = PatternReversal(PatternReversalParams(level_tolerance_atr=distance_atr * 1.01))
    outside = PatternReversal(PatternReversalParams(level_tolerance_atr=distance_atr * 0.99))

    assert inside.signals(ctx).direction[K] == 1
    assert outside.signals(ctx).direction[K] == 0


def test_lower_band_alone_qualifies_and_a_wider_band_blocks_it() -> None:
    ctx, strategy = run(AT_BAND)
    extreme, support, stop, _ = expected_levels(ctx, K, Side.LONG)
    atr = ctx.ind.atr(14)[K]

    assert extreme - support > 0.5 * atr  # the 50-bar support does not qualify it
    assert extreme <= ctx.ind.bbands(20, 2.0)[2][K]
    sig = strategy.signals(ctx)
    assert sig.direction[K] == 1
    assert sig.stop[K] == pytest.approx(stop, rel=1e-12)

    wide = PatternReversal(PatternReversalParams(bb_width=3.0))
    assert extreme > ctx.ind.bbands(20, 3.0)[2][K]
    assert wide.signals(ctx).direction[K] == 0


def test_support_window_is_the_50_bars_before_the_3_pattern_bars() -> None:
    # A deep low inside the window makes the pattern low 4+ ATR above support: no signal.
    _, strategy = run(AT_SUPPORT)
    for j, fires in ((K - 53, True), (K - 52, False), (K - 3, False)):
        ctx = context(with_low(AT_SUPPORT, j, 93.0))
        assert strategy.signals(ctx).direction[K] == int(fires), f"deep low at bar K-{K - j}"


def test_pattern_low_spans_the_last_3_bars_so_a_pattern_never_makes_its_own_level() -> None:
    ctx = context(with_low(AT_SUPPORT, K - 2, 93.0))
    sig = PatternReversal().signals(ctx)
    extreme, support, stop, _ = expected_levels(ctx, K, Side.LONG)

    assert extreme == 93.0 and support == TROUGH_LOW  # below support: qualifies as a break-and-reverse
    assert sig.direction[K] == 1
    assert sig.stop[K] == pytest.approx(stop, rel=1e-12)


def test_bullish_and_bearish_patterns_on_the_same_bar_cancel() -> None:
    ctx, strategy = run(CONFLICT)

    assert ctx.ind.pattern("CDLHAMMER")[K] == 1
    assert ctx.ind.pattern("CDLENGULFING")[K] == -1
    assert strategy.signals(ctx).direction[K] == 0

    without_bearish_engulfing = PatternReversal(PatternReversalParams(bearish_patterns=("CDLSHOOTINGSTAR",)))
    assert without_bearish_engulfing.signals(ctx).direction[K] == 1


def test_no_signal_until_the_full_support_window_exists() -> None:
    ctx, strategy = run(AT_BAND)
    longer = PatternReversal(PatternReversalParams(level_lookback=60))

    assert strategy.signals(ctx).direction[K] == 1
    assert longer.warmup > K + 1
    assert longer.signals(ctx).direction[K] == 0


def test_pattern_list_is_configurable() -> None:
    ctx, _ = run(AT_SUPPORT)
    hammer_only = PatternReversal(PatternReversalParams(bullish_patterns=("CDLHAMMER",)))

    assert hammer_only.signals(ctx).direction[K] == 0


def test_explain_gives_the_pattern_level_and_stop_with_numbers() -> None:
    ctx, strategy = run(AT_SUPPORT)
    extreme, support, stop, _ = expected_levels(ctx, K, Side.LONG)
    distance = (extreme - support) / ctx.ind.atr(14)[K]
    lowest_rsi = min(ctx.ind.rsi(14)[K - 2 : K + 1])

    assert strategy.explain(ctx, K, Side.LONG) == (
        f"bullish engulfing after RSI {lowest_rsi:.0f} oversold",
        f"low {extreme:.2f} at 50-bar support {support:.2f} ({distance:.1f} ATR above)",
        f"stop {stop:.2f}: 0.1 ATR below 3-bar low, target 2R",
    )


def test_explain_names_the_band_and_the_resistance_for_shorts() -> None:
    ctx, strategy = run(mirrored(AT_BAND))
    upper = ctx.ind.bbands(20, 2.0)[0][K]
    extreme, _, stop, _ = expected_levels(ctx, K, Side.SHORT)
    reasons = strategy.explain(ctx, K, Side.SHORT)
    highest_rsi = max(ctx.ind.rsi(14)[K - 2 : K + 1])

    assert strategy.signals(ctx).direction[K] == -1
    assert reasons == (
        f"bearish engulfing after RSI {highest_rsi:.0f} overbought",
        f"high {extreme:.2f} at/above upper Bollinger band(20, 2) {upper:.2f}",
        f"stop {stop:.2f}: 0.1 ATR above 3-bar high, target 2R",
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bullish_patterns": ("CDLENGULFING", "CDLNOPE")}, "'CDLNOPE'"),
        ({"bearish_patterns": ("SMA",)}, "not TA-Lib candlestick"),
        ({"bullish_patterns": ()}, "non-empty tuple"),
        ({"bearish_patterns": ["CDLENGULFING"]}, "non-empty tuple"),
        ({"pattern_span": 1}, "pattern_span"),
        ({"level_lookback": 50.5}, "level_lookback"),
        ({"level_tolerance_atr": -0.1}, "level_tolerance_atr"),
        ({"stop_buffer_atr": math.nan}, "stop_buffer_atr"),
        ({"reward_risk": 0.0}, "reward_risk"),
        ({"bb_width": 0.0}, "bb_width"),
        ({"exhaustion_rsi": 120.0}, "exhaustion_rsi must be within 0..100"),
    ],
)
def test_invalid_params_are_rejected_by_name(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PatternReversalParams(**params)  # type: ignore[arg-type]


def test_the_accepted_pattern_names_are_exactly_the_installed_ta_libs_candlestick_functions() -> None:
    assert frozenset(talib.get_function_groups()[PATTERN_GROUP]) == CANDLESTICK_FUNCTIONS
    # the warm-up each pattern adds is the installed library's lookback at its default candle settings
    assert {name: abstract.Function(name).lookback for name in CANDLESTICK_FUNCTIONS} == dict(CANDLESTICK_LOOKBACKS)
    for name in CANDLESTICK_FUNCTIONS:  # each one the strategy can be configured with runs
        PatternReversalParams(bullish_patterns=(name,), bearish_patterns=(name,))
        assert callable(getattr(talib, name))


def test_registered_with_a_searchable_space_for_every_instrument() -> None:
    strategy = build_strategy("pattern_reversal", {"level_lookback": 40})

    assert isinstance(strategy, PatternReversal)
    assert strategy.params.level_lookback == 40
    assert PatternReversal().warmup == 53
    space = PatternReversalParams.search_space()
    assert set(space) == {
        "level_lookback",
        "pattern_span",
        "level_tolerance_atr",
        "bb_period",
        "bb_width",
        "stop_buffer_atr",
        "reward_risk",
        "exhaustion_rsi",
    }
    assert all(strategy.applies_to(instrument) for instrument in DEFAULT_WATCHLIST)


def test_too_few_bars_give_no_signal() -> None:
    ctx = context(AT_SUPPORT[:3])

    assert PatternReversal().signals(ctx).fired().size == 0


@pytest.mark.parametrize("setup", ["long", "short"])
def test_a_pattern_without_an_exhausted_move_does_not_fire(setup: str) -> None:
    bars = AT_SUPPORT if setup == "long" else mirrored(AT_SUPPORT)
    ctx, strategy = run(bars)
    side = 1 if setup == "long" else -1
    rsi = ctx.ind.rsi(14)[K - 2 : K + 1]
    extreme = min(rsi) if side == 1 else 100 - max(rsi)  # how far into oversold/overbought the move went

    assert strategy.signals(ctx).direction[K] == side
    just_short = PatternReversal(PatternReversalParams(exhaustion_rsi=math.floor(extreme) - 1.0))
    assert just_short.signals(ctx).direction[K] == 0
    just_enough = PatternReversal(PatternReversalParams(exhaustion_rsi=math.ceil(extreme) + 0.0))
    assert just_enough.signals(ctx).direction[K] == side
