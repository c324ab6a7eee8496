"""Trend pullback: buy a dip to the fast EMA inside a higher-timeframe uptrend (mirror for shorts).

For FX, metals and crypto on intraday bars from 15m to 4h. Default parameters in brackets; every
indicator is TA-Lib's (EMA seeded with the SMA of its first `period` values, RSI and ATR Wilder-smoothed).
"HTF" is `trend_interval` [4h]: base bars grouped into bins whose edges sit on the session open (FX and
metals: 22:00 UTC, so 02:00/06:00/... UTC; crypto: 00:00/04:00/... UTC; bins at the edges of a trading
week may hold fewer bars). At base bar i only HTF bins that have fully closed by bar i's close are used;
the bin still forming is never looked at. `trend_interval` accepts an `Interval` or its text ("4h") and
must be above the instrument's interval (`applies_to` is False otherwise, `signals` raises).

A LONG fires at the close of base bar i when all of these hold:

1. HTF trend up: on the last closed HTF bin, EMA(`trend_fast` [50]) > EMA(`trend_slow` [200]) of the
   HTF closes;
2. close[i] > that same HTF EMA(`trend_slow`);
3. pullback: for at least one bar j of the last `pullback_bars` [5] bars including i (i-4 .. i),
   low[j] <= EMA(`pullback_ema` [20])[j] + `touch_atr` [0.25] x ATR(`atr_period` [14])[j] on base closes;
4. RSI recovering: RSI(`rsi_period` [14])[i-1] <= `rsi_trigger` [50] < RSI[i];
5. close[i] > EMA(`pullback_ema`)[i];
6. ATR(`atr_period`)[i] > 0.

A SHORT is the mirror: HTF EMA fast < slow; close < HTF EMA slow; some high[j] >=
EMA20[j] - touch_atr x ATR[j]; RSI[i-1] >= 100 - `rsi_trigger` > RSI[i] (50 with the default, so the
short trigger stays symmetric when the trigger is tuned); close < EMA20.

Levels: entry = close[i] (the backtester fills at the next open); risk = `atr_stop_mult` [1.5] x ATR[i];
stop = entry - risk for longs, entry + risk for shorts; target = entry +/- `reward_risk` [2.0] x risk, computed
in Decimal from the entry and stop once they are on the tick, so the target is exactly that multiple.

Example: a 1h EURUSD long at close 1.0901 with ATR 0.0010 has stop 1.0886 and target 1.0931.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from engine.bars import BoolArray, FloatArray, IntArray, take_aligned
from engine.domain import AssetClass, Instrument, Interval, Side
from engine.indicators import HigherTimeframe, MarketContext, ema_history, higher_bars, wilder_history
from engine.strategy import SignalArrays, Strategy, StrategyParams, param, register

APPLICABLE_ASSETS: Final = frozenset({AssetClass.FX, AssetClass.METAL, AssetClass.CRYPTO})
MIN_BASE_INTERVAL: Final = Interval.M15
MAX_BASE_INTERVAL: Final = Interval.H4
WARMUP_REFERENCE_INTERVAL: Final = Interval.H1
# HTF bins beyond the slow EMA's seed so the EMA has moved away from its SMA seed.
WARMUP_MARGIN_BINS: Final = 50
RSI_CENTRE: Final = 100.0
_PERIODS: Final = ("trend_fast", "trend_slow", "pullback_ema", "rsi_period", "atr_period")


@dataclass(frozen=True)
class TrendPullbackParams(StrategyParams):
    trend_interval: Interval = Interval.H4
    trend_fast: int = param(50, low=20, high=100, step=10)
    trend_slow: int = param(200, low=100, high=300, step=25)
    pullback_ema: int = param(20, low=10, high=50, step=5)
    pullback_bars: int = param(5, low=2, high=10, step=1)
    touch_atr: float = param(0.25, low=0.0, high=1.0, step=0.05)
    rsi_trigger: float = param(50.0, low=40.0, high=60.0, step=2.5)
    atr_stop_mult: float = param(1.5, low=1.0, high=3.0, step=0.25)
    reward_risk: float = param(2.0, low=1.0, high=4.0, step=0.5)
    rsi_period: int = param(14)
    atr_period: int = param(14)

    def __post_init__(self) -> None:
        try:
            interval = Interval(self.trend_interval)
        except ValueError:
            allowed = ", ".join(i.value for i in Interval)
            raise ValueError(f"trend_interval must be one of {allowed}, was {self.trend_interval!r}") from None
        object.__setattr__(self, "trend_interval", interval)
        for name, minimum in (*((n, 2) for n in _PERIODS), ("pullback_bars", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not float(value).is_integer() or value < minimum:
                raise ValueError(f"{name} must be a whole number of at least {minimum}, was {value!r}")
            object.__setattr__(self, name, int(value))
        if self.trend_fast >= self.trend_slow:
            raise ValueError(f"trend_fast ({self.trend_fast}) must be shorter than trend_slow ({self.trend_slow})")
        if not self.touch_atr >= 0.0:
            raise ValueError(f"touch_atr must not be negative, was {self.touch_atr}")
        if not 0.0 < self.rsi_trigger < RSI_CENTRE:
            raise ValueError(f"rsi_trigger must be within 0..100 exclusive, was {self.rsi_trigger}")
        if not self.atr_stop_mult > 0.0:
            raise ValueError(f"atr_stop_mult must be positive, was {self.atr_stop_mult}")
        if not self.reward_risk > 0.0:
            raise ValueError(f"reward_risk must be positive, was {self.reward_risk}")


@dataclass(frozen=True, eq=False)
class _Levels:
    """The indicator arrays the rules compare, shared by `signals` and `explain`."""

    htf: HigherTimeframe
    htf_fast: FloatArray
    htf_slow: FloatArray
    ema: FloatArray
    atr: FloatArray
    rsi: FloatArray

    def trend_at(self, idx: IntArray) -> tuple[FloatArray, FloatArray]:
        """HTF fast and slow EMA of the last closed bin at base bars `idx` (`htf.on_base(...)[idx]`, sparsely)."""
        at = self.htf.index[idx]
        return take_aligned(self.htf_fast, at), take_aligned(self.htf_slow, at)


@register
class TrendPullback(Strategy[TrendPullbackParams]):
    name = "trend_pullback"
    params_type = TrendPullbackParams

    def applies_to(self, instrument: Instrument) -> bool:
        """Whether the instrument is FX, metal or crypto on 15m..4h bars below the trend interval."""
        base = instrument.interval
        return (
            instrument.asset_class in APPLICABLE_ASSETS
            and MIN_BASE_INTERVAL.delta <= base.delta <= MAX_BASE_INTERVAL.delta
            and self.params.trend_interval.delta > base.delta
        )

    @property
    def warmup(self) -> int:
        """Base bars for the HTF slow EMA plus a margin, counted on 1h base bars."""
        per_bin = self.params.trend_interval.nanos // WARMUP_REFERENCE_INTERVAL.nanos
        return int((self.params.trend_slow + WARMUP_MARGIN_BINS) * max(per_bin, 1))

    def history(self, instrument: Instrument) -> int:
        """The HTF slow EMA's convergence in base bars, or the base EMA/ATR/RSI's and the pullback window."""
        p = self.params
        trend = higher_bars(instrument.interval, p.trend_interval, ema_history(p.trend_slow))
        base = max(ema_history(p.pullback_ema), wilder_history(p.atr_period), wilder_history(p.rsi_period) + 1)
        return max(self.warmup, trend, base + p.pullback_bars)

    def _levels(self, ctx: MarketContext) -> _Levels:
        p = self.params
        if p.trend_interval.delta <= ctx.bars.interval.delta:
            raise ValueError(
                f"{self.name}: trend_interval {p.trend_interval} must be above the base interval {ctx.bars.interval}"
            )
        htf = ctx.higher(p.trend_interval)
        return _Levels(
            htf,
            htf.ind.ema(p.trend_fast),
            htf.ind.ema(p.trend_slow),
            ctx.ind.ema(p.pullback_ema),
            ctx.ind.atr(p.atr_period),
            ctx.ind.rsi(p.rsi_period),
        )

    def overlays(self, ctx: MarketContext) -> dict[str, FloatArray]:
        """The pullback EMA and the higher timeframe's trend EMAs (of its last closed bin) on every bar."""
        p = self.params
        lv = self._levels(ctx)
        return {
            f"EMA{p.pullback_ema}": lv.ema,
            f"{p.trend_interval} EMA{p.trend_fast}": lv.htf.on_base(lv.htf_fast),
            f"{p.trend_interval} EMA{p.trend_slow}": lv.htf.on_base(lv.htf_slow),
        }

    def _touches(self, ctx: MarketContext, lv: _Levels, idx: IntArray, sign: FloatArray) -> BoolArray:
        """Pullback touches: column k says whether bar idx - k reached the EMA band on the side of `sign`."""
        p = self.params
        bars_back = idx[:, None] - np.arange(p.pullback_bars)[None, :]
        inside = bars_back >= 0
        j = np.maximum(bars_back, 0)
        s = sign[:, None]
        extreme = np.where(s > 0, ctx.bars.low[j], ctx.bars.high[j])
        return inside & (s * (extreme - lv.ema[j]) <= p.touch_atr * lv.atr[j])

    def signals(self, ctx: MarketContext) -> SignalArrays:
        """Long/short candidates on every bar where the trend, pullback and RSI rules hold."""
        n = len(ctx)
        p = self.params
        if n < 2:
            return SignalArrays.none(n)
        lv = self._levels(ctx)
        close = ctx.bars.close
        # RSI crosses are rare: find them first, then check the other rules at those bars only.
        prev_rsi, rsi = lv.rsi[:-1], lv.rsi[1:]
        short_trigger = RSI_CENTRE - p.rsi_trigger
        up = (prev_rsi <= p.rsi_trigger) & (rsi > p.rsi_trigger)
        down = (prev_rsi >= short_trigger) & (rsi < short_trigger)
        idx = (np.flatnonzero(up | down) + 1).astype(np.int64)
        sign = np.where(up[idx - 1], 1.0, -1.0)
        fast, slow = lv.trend_at(idx)
        at_close, at_ema, at_atr = close[idx], lv.ema[idx], lv.atr[idx]
        # NaN (indicator not warmed up, no closed HTF bin yet) compares False, so such bars never fire.
        ok = (
            (at_atr > 0.0)
            & (sign * (fast - slow) > 0.0)
            & (sign * (at_close - slow) > 0.0)
            & (sign * (at_close - at_ema) > 0.0)
            & self._touches(ctx, lv, idx, sign).any(axis=1)
        )
        keep, side = idx[ok], sign[ok]
        direction = np.zeros(n, dtype=np.int8)
        direction[keep] = side.astype(np.int8)
        entry, stop, target = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        risk = p.atr_stop_mult * at_atr[ok]
        entry[keep] = at_close[ok]
        stop[keep] = at_close[ok] - side * risk
        target[keep] = at_close[ok] + side * p.reward_risk * risk
        return SignalArrays(direction, entry, stop, target, p.reward_risk)

    def explain(self, ctx: MarketContext, i: int, side: Side) -> tuple[str, ...]:
        """Trend, pullback, RSI trigger and close-vs-EMA reasons for bar `i`, with their numbers."""
        p = self.params
        lv = self._levels(ctx)
        b = ctx.bars
        fmt = _price_format(ctx.instrument)
        long = side is Side.LONG
        k = int(lv.htf.index[i])  # one bar: scalars (the same numbers as `trend_at` and `_touches` give for it)
        fast, slow = (float(v[k]) if k >= 0 else math.nan for v in (lv.htf_fast, lv.htf_slow))
        extremes = b.low if long else b.high
        sign, reach = float(side.sign), p.touch_atr
        back = next(
            (
                back
                for back in range(min(p.pullback_bars, i + 1))
                if sign * (extremes[i - back] - lv.ema[i - back]) <= reach * lv.atr[i - back]
            ),
            0,
        )
        j = i - back
        ago = "on the signal bar" if back == 0 else f"{back} bar{'s' if back > 1 else ''} ago"
        trigger = p.rsi_trigger if long else RSI_CENTRE - p.rsi_trigger
        return (
            f"{p.trend_interval} trend {'up' if long else 'down'}: EMA{p.trend_fast} {fast:{fmt}} "
            f"{'>' if long else '<'} EMA{p.trend_slow} {slow:{fmt}}",
            f"pulled back to EMA{p.pullback_ema} {lv.ema[j]:{fmt}}: {'low' if long else 'high'} "
            f"{(b.low if long else b.high)[j]:{fmt}} {ago}",
            f"RSI {lv.rsi[i]:.1f} {'recovered above' if long else 'fell back below'} {trigger:g} "
            f"(prev {lv.rsi[i - 1]:.1f})",
            f"close {b.close[i]:{fmt}} {'above' if long else 'below'} EMA{p.pullback_ema} {lv.ema[i]:{fmt}} "
            f"and {p.trend_interval} EMA{p.trend_slow} {slow:{fmt}}",
        )


def _price_format(instrument: Instrument) -> str:
    """Format spec showing prices to the instrument's tick precision."""
    exponent = instrument.tick_size.normalize().as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return f".{decimals}f"
