"""Candlestick reversal at support or resistance: a TA-Lib pattern printed where price has turned before.

Rules at bar i (defaults in brackets; every input uses bars <= i only):

1. Pattern. A long needs any of `bullish_patterns` to be +1 at bar i, a short any of `bearish_patterns` to
   be -1 at bar i [bullish: CDLENGULFING, CDLHAMMER, CDLMORNINGSTAR, CDLPIERCING; bearish: CDLENGULFING,
   CDLSHOOTINGSTAR, CDLEVENINGSTAR, CDLDARKCLOUDCOVER]. TA-Lib marks the last candle of a pattern, so a
   two- or three-candle pattern fires on its last candle. If a bullish and a bearish pattern of the lists
   both print on bar i (e.g. a small black hammer that also engulfs a tiny white candle), nothing fires.
   TA-Lib's candle functions compare the candle with trailing averages of the body / shadow / range sizes
   of the 5-10 candles *before* it (running sums over the past only): causal. They do not check the prior
   trend (CDLHAMMER is any small body with a long lower shadow near the previous low), which is what the
   level filter below is for.
2. Level. Pattern low = lowest low of the last `pattern_span` [3] bars (i-2..i); support = lowest low of
   the `level_lookback` [50] bars before those (i-52..i-3), so the pattern never defines its own level.
   A long needs the pattern low within `level_tolerance_atr` [0.5] x ATR(`atr_period` [14]) above the
   support, or below it (pattern low - support <= 0.5 ATR), OR the pattern low at/below the lower
   Bollinger band(`bb_period` [20], `bb_width` [2.0], SMA) of bar i. Shorts mirror this: pattern high =
   highest high of i-2..i, resistance = highest high of i-52..i-3, resistance - pattern high <= 0.5 ATR, or
   pattern high at/above the upper band.
3. Exhaustion. A reversal needs a move to reverse: for a long, RSI(14) was at or below `exhaustion_rsi` [35]
   on at least one bar of the pattern (i-2..i); for a short, at or above 100 - `exhaustion_rsi` [65]. With
   the level rule alone the patterns fired on about 5 % of all bars (2.6 setups per symbol and day on the
   shared data, mostly engulfings inside ranges); this rule halves that. Set 100 to switch it off.
4. Stop and target. Entry = close of bar i (the backtester fills at the next open). Long stop = pattern low -
   `stop_buffer_atr` [0.1] x ATR; short stop = pattern high + 0.1 x ATR. Target = entry +/- `reward_risk`
   [2.0] x (entry - stop), exact in Decimal from the entry and stop on the tick. A bar whose risk is not
   positive (flat data with no buffer) does not fire.

No signal before ATR, the Bollinger bands and the full support/resistance window exist (`warmup` bars).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from engine.bars import BoolArray, FloatArray
from engine.domain import Instrument, Side
from engine.indicators import BEARISH, BULLISH, MarketContext, shift, wilder_history
from engine.strategy import LONG, SHORT, SignalArrays, Strategy, StrategyParams, param, register

BULLISH_PATTERNS = ("CDLENGULFING", "CDLHAMMER", "CDLMORNINGSTAR", "CDLPIERCING")
BEARISH_PATTERNS = ("CDLENGULFING", "CDLSHOOTINGSTAR", "CDLEVENINGSTAR", "CDLDARKCLOUDCOVER")
PATTERN_GROUP = "Pattern Recognition"
# TA-Lib's candlestick functions (its 'Pattern Recognition' group) with the bars each needs before its first
# answer at TA-Lib's default candle settings, which tradebot never changes; a unit test holds both to the installed
# library. Named here so that reading a configuration and sizing a strategy's history do not import TA-Lib.
CANDLESTICK_LOOKBACKS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "CDL2CROWS": 12,
        "CDL3BLACKCROWS": 13,
        "CDL3INSIDE": 12,
        "CDL3LINESTRIKE": 8,
        "CDL3OUTSIDE": 3,
        "CDL3STARSINSOUTH": 12,
        "CDL3WHITESOLDIERS": 12,
        "CDLABANDONEDBABY": 12,
        "CDLADVANCEBLOCK": 12,
        "CDLBELTHOLD": 10,
        "CDLBREAKAWAY": 14,
        "CDLCLOSINGMARUBOZU": 10,
        "CDLCONCEALBABYSWALL": 13,
        "CDLCOUNTERATTACK": 11,
        "CDLDARKCLOUDCOVER": 11,
        "CDLDOJI": 10,
        "CDLDOJISTAR": 11,
        "CDLDRAGONFLYDOJI": 10,
        "CDLENGULFING": 2,
        "CDLEVENINGDOJISTAR": 12,
        "CDLEVENINGSTAR": 12,
        "CDLGAPSIDESIDEWHITE": 7,
        "CDLGRAVESTONEDOJI": 10,
        "CDLHAMMER": 11,
        "CDLHANGINGMAN": 11,
        "CDLHARAMI": 11,
        "CDLHARAMICROSS": 11,
        "CDLHIGHWAVE": 10,
        "CDLHIKKAKE": 5,
        "CDLHIKKAKEMOD": 10,
        "CDLHOMINGPIGEON": 11,
        "CDLIDENTICAL3CROWS": 12,
        "CDLINNECK": 11,
        "CDLINVERTEDHAMMER": 11,
        "CDLKICKING": 11,
        "CDLKICKINGBYLENGTH": 11,
        "CDLLADDERBOTTOM": 14,
        "CDLLONGLEGGEDDOJI": 10,
        "CDLLONGLINE": 10,
        "CDLMARUBOZU": 10,
        "CDLMATCHINGLOW": 6,
        "CDLMATHOLD": 14,
        "CDLMORNINGDOJISTAR": 12,
        "CDLMORNINGSTAR": 12,
        "CDLONNECK": 11,
        "CDLPIERCING": 11,
        "CDLRICKSHAWMAN": 10,
        "CDLRISEFALL3METHODS": 14,
        "CDLSEPARATINGLINES": 11,
        "CDLSHOOTINGSTAR": 11,
        "CDLSHORTLINE": 10,
        "CDLSPINNINGTOP": 10,
        "CDLSTALLEDPATTERN": 12,
        "CDLSTICKSANDWICH": 7,
        "CDLTAKURI": 10,
        "CDLTASUKIGAP": 7,
        "CDLTHRUSTING": 11,
        "CDLTRISTAR": 12,
        "CDLUNIQUE3RIVER": 12,
        "CDLUPSIDEGAP2CROWS": 12,
        "CDLXSIDEGAP3METHODS": 2,
    }
)
CANDLESTICK_FUNCTIONS: Final = frozenset(CANDLESTICK_LOOKBACKS)
EXHAUSTION_RSI_PERIOD = 14


@dataclass(frozen=True)
class PatternReversalParams(StrategyParams):
    bullish_patterns: tuple[str, ...] = BULLISH_PATTERNS
    bearish_patterns: tuple[str, ...] = BEARISH_PATTERNS
    level_lookback: int = param(50, low=20, high=100, step=10)
    pattern_span: int = param(3, low=2, high=5, step=1)
    level_tolerance_atr: float = param(0.5, low=0.1, high=1.0, step=0.1)
    bb_period: int = param(20, low=10, high=40, step=5)
    bb_width: float = param(2.0, low=1.5, high=3.0, step=0.25)
    atr_period: int = param(14)
    stop_buffer_atr: float = param(0.1, low=0.0, high=0.5, step=0.05)
    exhaustion_rsi: float = param(35.0, low=20.0, high=50.0, step=5.0)
    reward_risk: float = param(2.0, low=1.0, high=4.0, step=0.5)

    def __post_init__(self) -> None:
        for field_name in ("bullish_patterns", "bearish_patterns"):
            names = getattr(self, field_name)
            if not isinstance(names, tuple) or not names:
                raise ValueError(f"{field_name} must be a non-empty tuple of TA-Lib pattern names, was {names!r}")
            unknown = [n for n in names if n not in CANDLESTICK_FUNCTIONS]
            if unknown:
                raise ValueError(
                    f"{field_name}: {', '.join(map(repr, unknown))} not TA-Lib candlestick function(s); "
                    f"use names like CDLENGULFING from talib's {PATTERN_GROUP!r} group"
                )
        for name, minimum in (("level_lookback", 2), ("pattern_span", 2), ("bb_period", 2), ("atr_period", 1)):
            value = getattr(self, name)
            if value != int(value) or value < minimum:
                raise ValueError(f"{name} must be a whole number of bars >= {minimum}, was {value!r}")
        if not 0 <= self.exhaustion_rsi <= 100:
            raise ValueError(f"exhaustion_rsi must be within 0..100, was {self.exhaustion_rsi!r}")
        for name in ("level_tolerance_atr", "stop_buffer_atr"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must not be negative, was {getattr(self, name)!r}")
        for name in ("bb_width", "reward_risk"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, was {getattr(self, name)!r}")


@dataclass(frozen=True, eq=False)
class _Levels:
    """Per-bar inputs of the level filter and the stops (memoised arrays, nothing computed here)."""

    atr: FloatArray
    pattern_low: FloatArray
    pattern_high: FloatArray
    window_low: FloatArray  # lowest low of the `level_lookback` bars ending at each bar; support is `span` bars back
    window_high: FloatArray
    lower_band: FloatArray
    upper_band: FloatArray


@cache
def _pattern_label(name: str) -> str:
    """Lower-case display name of a TA-Lib candlestick function ("CDLENGULFING" -> "engulfing")."""
    from talib import abstract  # noqa: PLC0415 - TA-Lib is imported on first use (see `engine.indicators.ta`)

    info = abstract.Function(name).info  # type: ignore[attr-defined]
    return str(info["display_name"]).removesuffix(" Pattern").lower()


def _decimals(instrument: Instrument) -> int:
    exponent = instrument.tick_size.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 2


@register
class PatternReversal(Strategy[PatternReversalParams]):
    """Bullish/bearish TA-Lib candlestick patterns printed at support/resistance or outside the Bollinger bands."""

    name = "pattern_reversal"
    params_type = PatternReversalParams

    def applies_to(self, instrument: Instrument) -> bool:
        del instrument
        return True

    @property
    def warmup(self) -> int:
        p = self.params
        patterns = (*p.bullish_patterns, *p.bearish_patterns)
        return max(
            int(p.level_lookback) + int(p.pattern_span),
            int(p.bb_period),
            int(p.atr_period) + 1,
            max(CANDLESTICK_LOOKBACKS[n] for n in patterns) + 1,
        )

    def history(self, instrument: Instrument) -> int:
        """ATR's and the exhaustion RSI's convergence over the pattern's bars, or the level window."""
        del instrument
        p = self.params
        span = int(p.pattern_span)
        return max(self.warmup, wilder_history(int(p.atr_period)), wilder_history(EXHAUSTION_RSI_PERIOD) + span)

    def _levels(self, ctx: MarketContext) -> _Levels:
        p = self.params
        span, lookback = int(p.pattern_span), int(p.level_lookback)
        upper, _, lower = ctx.ind.bbands(int(p.bb_period), float(p.bb_width))
        return _Levels(
            atr=ctx.ind.atr(int(p.atr_period)),
            pattern_low=ctx.ind.lowest(span),
            pattern_high=ctx.ind.highest(span),
            window_low=ctx.ind.lowest(lookback),
            window_high=ctx.ind.highest(lookback),
            lower_band=lower,
            upper_band=upper,
        )

    def overlays(self, ctx: MarketContext) -> dict[str, FloatArray]:
        """The Bollinger bands a reversal must reach."""
        lv = self._levels(ctx)
        return {"upper band": lv.upper_band, "lower band": lv.lower_band}

    @staticmethod
    def _any_pattern(ctx: MarketContext, names: tuple[str, ...], sign: int) -> BoolArray:
        hit = np.zeros(len(ctx), dtype=np.bool_)
        for name in names:
            hit |= ctx.ind.pattern(name) == sign
        return hit

    def signals(self, ctx: MarketContext) -> SignalArrays:
        n = len(ctx)
        if n < int(self.params.pattern_span) + 1:
            return SignalArrays.none(n)
        p = self.params
        lv = self._levels(ctx)
        close = ctx.bars.close
        bullish = self._any_pattern(ctx, p.bullish_patterns, BULLISH)
        bearish = self._any_pattern(ctx, p.bearish_patterns, BEARISH)
        tolerance = p.level_tolerance_atr * lv.atr
        buffer = p.stop_buffer_atr * lv.atr
        support = shift(lv.window_low, int(p.pattern_span))
        resistance = shift(lv.window_high, int(p.pattern_span))
        rsi_low, rsi_high = self._rsi_extremes(ctx)
        with np.errstate(invalid="ignore"):
            ready = ~(np.isnan(lv.atr) | np.isnan(support) | np.isnan(lv.lower_band))
            oversold = rsi_low <= p.exhaustion_rsi
            overbought = rsi_high >= 100 - p.exhaustion_rsi
            at_support = (lv.pattern_low - support <= tolerance) | (lv.pattern_low <= lv.lower_band)
            at_resistance = (resistance - lv.pattern_high <= tolerance) | (lv.pattern_high >= lv.upper_band)
            long_stop = lv.pattern_low - buffer
            short_stop = lv.pattern_high + buffer
            is_long = ready & bullish & ~bearish & at_support & oversold & (close - long_stop > 0)
            is_short = ready & bearish & ~bullish & at_resistance & overbought & (short_stop - close > 0)
        direction: npt.NDArray[np.int8] = np.zeros(n, dtype=np.int8)
        direction[is_long] = LONG
        direction[is_short] = SHORT
        fired = is_long | is_short
        stop = np.where(is_long, long_stop, np.where(is_short, short_stop, np.nan))
        entry = np.where(fired, close, np.nan)
        target = entry + p.reward_risk * (entry - stop)
        return SignalArrays(direction, entry, stop, target, p.reward_risk)

    def _rsi_extremes(self, ctx: MarketContext) -> tuple[FloatArray, FloatArray]:
        """Lowest and highest RSI(14) over the pattern's bars (NaN until RSI exists for all of them)."""
        span = int(self.params.pattern_span)

        def compute() -> tuple[FloatArray, FloatArray]:
            rsi = ctx.ind.rsi(EXHAUSTION_RSI_PERIOD)
            low, high = rsi.copy(), rsi.copy()
            for back in range(1, span):
                earlier = shift(rsi, back)
                low, high = np.minimum(low, earlier), np.maximum(high, earlier)
            return low, high

        result: tuple[FloatArray, FloatArray] = ctx.ind.memo(("rsi_extremes", EXHAUSTION_RSI_PERIOD, span), compute)
        return result

    def explain(self, ctx: MarketContext, i: int, side: Side) -> tuple[str, ...]:
        p = self.params
        lv = self._levels(ctx)
        d = _decimals(ctx.instrument)
        atr = float(lv.atr[i])
        long = side is Side.LONG
        names = p.bullish_patterns if long else p.bearish_patterns
        sign = BULLISH if long else BEARISH
        hits = [_pattern_label(n) for n in names if ctx.ind.pattern(n)[i] == sign]
        rsi_low, rsi_high = self._rsi_extremes(ctx)
        rsi_word = f"RSI {float(rsi_low[i] if long else rsi_high[i]):.0f} {'oversold' if long else 'overbought'}"
        reasons = [f"{'bullish' if long else 'bearish'} {' + '.join(hits)} after {rsi_word}"]

        extreme_word = "low" if long else "high"
        extreme = float((lv.pattern_low if long else lv.pattern_high)[i])
        level = float((lv.window_low if long else lv.window_high)[i - int(p.pattern_span)])
        band = float((lv.lower_band if long else lv.upper_band)[i])
        # Distance from the level towards the market (above support / below resistance) in price units.
        inside = (extreme - level) if long else (level - extreme)
        if inside <= p.level_tolerance_atr * atr:
            toward, beyond = ("above", "below") if long else ("below", "above")
            reasons.append(
                f"{extreme_word} {extreme:.{d}f} at {int(p.level_lookback)}-bar "
                f"{'support' if long else 'resistance'} {level:.{d}f} "
                f"({abs(inside) / atr:.1f} ATR {toward if inside >= 0 else beyond})"
            )
        if (extreme <= band) if long else (extreme >= band):
            reasons.append(
                f"{extreme_word} {extreme:.{d}f} {'at/below lower' if long else 'at/above upper'} "
                f"Bollinger band({int(p.bb_period)}, {p.bb_width:g}) {band:.{d}f}"
            )
        stop = extreme - p.stop_buffer_atr * atr if long else extreme + p.stop_buffer_atr * atr
        reasons.append(
            f"stop {stop:.{d}f}: {p.stop_buffer_atr:g} ATR {'below' if long else 'above'} "
            f"{int(p.pattern_span)}-bar {extreme_word}, target {p.reward_risk:g}R"
        )
        return tuple(reasons)
