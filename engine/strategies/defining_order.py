"""Defining Order Breakout: trade the first close beyond the session's opening range in the 1h bias direction.

For intraday equities, ETFs and indices on bars of 15 minutes or less. All times of day are exchange-local,
taken from the instrument's session calendar. The *entry time* of a bar is its close time (open + interval):
that is when the signal is known and the trade is entered. A bar fires long at bar i when all of these hold
(shorts mirror every rule):

1. Defining range: the bars of i's session day that *open* in the first `range_minutes` (default 60) of the
   session; range high/low = their highest high/lowest low. The day has a range only if it holds at least
   `min_range_coverage` (80 %) of the expected `ceil(range_minutes / interval)` range bars, so a day whose
   data starts late has no range and no signals. Bar i must open at or after the end of the range period.
2. Bias: the last 1h bar fully closed by bar i's close (1h bins start at the session open) closed above its
   SMA(`bias_sma`, 50) of 1h closes: long only. Below: short only. Equal or no SMA yet: no signal.
3. Breakout: close > range high and `(close - range_high) / range_high * 100 >= min_breakout_pct` (0.4).
   Shorts: close < range low and `(range_low - close) / range_low * 100 >= min_breakout_pct`.
4. Momentum: `rsi_low <= RSI(rsi_period) <= rsi_high` (30..70, 14) at bar i.
5. Late-entry volume: if the entry time is more than `late_entry_minutes` (120) after the range period ends,
   volume[i] >= `late_volume_mult` (1.5) x the mean volume of the last `volume_period` (20) bars including
   bar i, and volume[i] > 0 (a bar that traded nothing confirms nothing). Instruments without volume data
   (`has_volume` False, e.g. the NIFTY 50 index whose volume is always 0) skip this rule instead of never
   firing.
6. Blocked hours: the entry time's local minute of day is not inside any `blocked_hours` window, each an
   inclusive "HH:MM-HH:MM" minute range (default "10:00-13:59": a 5m bar opening 13:55 enters at 14:00 and
   may fire; one opening 13:50 enters at 13:55 and may not).
7. Session end: the entry time is at most `session_minutes - last_entry_minutes_before_close` (25) minutes
   after the session open (NSE 15:30 close: last entry 15:05, i.e. the 5m bar opening 15:00).
8. Once per side per day: bar i is the first bar of its session day where rules 1-7 hold for that side.
9. The symbol is not in `blacklist`.

Levels: entry = close[i]; stop = the broken range edge (range high for a long, range low for a short);
target = entry + `reward_risk` (2.0) x (entry - stop) for a long, entry - `reward_risk` x (stop - entry) for a
short, computed in Decimal from the entry and stop on the tick (`SignalArrays.reward_risk`), so 2R is exact.
With the defaults on NSE (range ends 10:15, blocked 10:00-13:59, last entry 15:05) every entry falls
between 14:00 and 15:05 and is late, so the volume rule always applies.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from engine.bars import FloatArray, IntArray
from engine.domain import AssetClass, Instrument, Interval, Side
from engine.indicators import MarketContext, higher_bars, wilder_history
from engine.strategy import LONG, SHORT, SignalArrays, Strategy, StrategyParams, param, register

_APPLIES_TO = frozenset({AssetClass.EQUITY, AssetClass.ETF, AssetClass.INDEX})
_MAX_INTERVAL = Interval.M15
_BIAS_INTERVAL = Interval.H1
# Warmup is sized for 5-minute bars, the finest interval of the watchlist: 12 bars per 1h bias bin.
_WARMUP_BARS_PER_BIAS_BIN = 12
_MINUTES_PER_DAY = 1440
_WINDOW = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def _minute(hours: str, minutes: str, window: str) -> int:
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise ValueError(f"blocked_hours window {window!r} has an invalid time of day (00:00..23:59)")
    return h * 60 + m


@lru_cache(maxsize=64)
def parse_windows(windows: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Parse inclusive "HH:MM-HH:MM" windows into (first, last) local minutes of day."""
    parsed = []
    for window in windows:
        match = _WINDOW.match(window) if isinstance(window, str) else None
        if match is None:
            raise ValueError(f"blocked_hours entries must look like 'HH:MM-HH:MM', got {window!r}")
        first = _minute(match[1], match[2], window)
        last = _minute(match[3], match[4], window)
        if last < first:
            raise ValueError(f"blocked_hours window {window!r} ends before it starts (wrap past midnight unsupported)")
        parsed.append((first, last))
    return tuple(parsed)


@dataclass(frozen=True)
class DefiningOrderParams(StrategyParams):
    range_minutes: int = param(60, low=15, high=120, step=15)
    min_range_coverage: float = 0.8
    bias_sma: int = param(50, low=20, high=100, step=10)
    min_breakout_pct: float = param(0.4, low=0.1, high=1.0, step=0.1)
    rsi_period: int = 14
    rsi_low: float = param(30.0, low=20.0, high=40.0, step=5.0)
    rsi_high: float = param(70.0, low=60.0, high=80.0, step=5.0)
    late_entry_minutes: int = param(120, low=30, high=240, step=30)
    late_volume_mult: float = param(1.5, low=1.0, high=3.0, step=0.25)
    volume_period: int = 20
    blocked_hours: tuple[str, ...] = ("10:00-13:59",)
    last_entry_minutes_before_close: int = param(25, low=0, high=60, step=5)
    reward_risk: float = param(2.0, low=1.0, high=4.0, step=0.5)
    blacklist: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.blocked_hours, tuple):
            raise ValueError(f"blocked_hours must be a tuple of 'HH:MM-HH:MM' strings, was {self.blocked_hours!r}")
        parse_windows(self.blocked_hours)
        if not isinstance(self.blacklist, tuple):
            raise ValueError(f"blacklist must be a tuple of symbols, was {self.blacklist!r}")
        for name in ("range_minutes", "bias_sma", "rsi_period", "volume_period"):
            value = getattr(self, name)
            if value != int(value) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, was {value!r}")
        if not 0.0 < self.min_range_coverage <= 1.0:
            raise ValueError(f"min_range_coverage must be within (0, 1], was {self.min_range_coverage}")
        if not 0.0 <= self.rsi_low <= self.rsi_high <= 100.0:
            raise ValueError(
                f"rsi_low..rsi_high must satisfy 0 <= low <= high <= 100, was {self.rsi_low}..{self.rsi_high}"
            )
        for name in ("min_breakout_pct", "late_entry_minutes", "late_volume_mult", "last_entry_minutes_before_close"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, was {getattr(self, name)}")
        if self.reward_risk <= 0:
            raise ValueError(f"reward_risk must be positive, was {self.reward_risk}")


def _interval_minutes(interval: Interval) -> int:
    return int(interval.delta.total_seconds()) // 60


def _day_starts(day: IntArray) -> IntArray:
    """Positions where a new session day begins in a non-decreasing day array."""
    new = np.empty(len(day), dtype=np.bool_)
    new[:1] = True
    np.not_equal(day[1:], day[:-1], out=new[1:])
    return np.flatnonzero(new)


@register
class DefiningOrderBreakout(Strategy[DefiningOrderParams]):
    name = "defining_order"
    params_type = DefiningOrderParams

    def applies_to(self, instrument: Instrument) -> bool:
        return (
            instrument.asset_class in _APPLIES_TO
            and instrument.interval.is_intraday
            and instrument.interval.delta <= _MAX_INTERVAL.delta
        )

    @property
    def warmup(self) -> int:
        return int(self.params.bias_sma) * _WARMUP_BARS_PER_BIAS_BIN

    def history(self, instrument: Instrument) -> int:
        """RSI's convergence, the 1h SMA's bins and a whole day of bars (so the signal's day has its range)."""
        p = self.params
        day = _MINUTES_PER_DAY // _interval_minutes(instrument.interval)
        bias = higher_bars(instrument.interval, _BIAS_INTERVAL, int(p.bias_sma))
        return max(self.warmup, bias, wilder_history(int(p.rsi_period)), int(p.volume_period)) + day

    def _range_levels(self, ctx: MarketContext, at: IntArray) -> tuple[FloatArray, FloatArray]:
        """Range high and low of the session day of each bar in `at` (NaN when the day has no usable range).

        Only valid for bars after the range period: a day's range bars then all precede the bar.
        """
        p = self.params
        day = ctx.session_day
        range_bars = np.flatnonzero(ctx.minutes_from_open < p.range_minutes)
        nan = np.full(len(at), np.nan)
        if len(range_bars) == 0:
            return nan, nan.copy()
        range_day = day[range_bars]
        starts = _day_starts(range_day)
        highs = np.maximum.reduceat(ctx.bars.high[range_bars], starts)
        lows = np.minimum.reduceat(ctx.bars.low[range_bars], starts)
        counts = np.empty_like(starts)
        counts[:-1] = starts[1:] - starts[:-1]
        counts[-1] = len(range_bars) - starts[-1]
        expected = math.ceil(p.range_minutes / _interval_minutes(ctx.bars.interval))
        covered = counts >= p.min_range_coverage * expected
        # Session-day ids are consecutive integers: a dense lookup table maps a day to its range.
        first_day = int(day[0])
        lookup_high = np.full(int(day[-1]) - first_day + 1, np.nan)
        lookup_low = lookup_high.copy()
        slot = range_day[starts][covered] - first_day
        lookup_high[slot] = highs[covered]
        lookup_low[slot] = lows[covered]
        at_slot = day[at] - first_day
        return lookup_high[at_slot], lookup_low[at_slot]

    def overlays(self, ctx: MarketContext) -> dict[str, FloatArray]:
        """The defining range's high and low from the end of each day's range period."""
        every = np.arange(len(ctx), dtype=np.int64)
        high, low = self._range_levels(ctx, every)
        settled = ctx.minutes_from_open >= self.params.range_minutes
        return {"range high": np.where(settled, high, np.nan), "range low": np.where(settled, low, np.nan)}

    def _bias(self, ctx: MarketContext) -> npt.NDArray[np.int8]:
        """+1 / -1 / 0 per base bar: the last closed 1h close above / below / not comparable to its SMA."""
        htf = ctx.higher(_BIAS_INTERVAL)
        close, sma = htf.bars.close, htf.ind.sma(int(self.params.bias_sma))
        sign = np.zeros(len(close) + 1, dtype=np.int8)  # the extra trailing 0 answers index -1 (no closed bin)
        sign[:-1][close > sma] = LONG
        sign[:-1][close < sma] = SHORT
        return sign[htf.index]

    def signals(self, ctx: MarketContext) -> SignalArrays:
        p = self.params
        n = len(ctx)
        if n == 0 or ctx.instrument.symbol in p.blacklist:
            return SignalArrays.none(n)
        bars = ctx.bars
        interval_minutes = _interval_minutes(bars.interval)
        from_open = ctx.minutes_from_open
        last_open = ctx.calendar.session_minutes - p.last_entry_minutes_before_close - interval_minutes
        at = np.flatnonzero((from_open >= p.range_minutes) & (from_open <= last_open))
        windows = parse_windows(p.blocked_hours)
        if windows and len(at):
            entry_local = (ctx.local_minute[at] + interval_minutes) % _MINUTES_PER_DAY
            allowed = np.ones(len(at), dtype=np.bool_)
            for first, last in windows:
                allowed &= (entry_local < first) | (entry_local > last)
            at = at[allowed]
        # Every remaining rule is evaluated only on the bars whose timing allows an entry.
        if len(at) == 0:
            return SignalArrays.none(n)
        close = bars.close[at]
        range_high, range_low = self._range_levels(ctx, at)
        bias = self._bias(ctx)[at]
        rsi = ctx.ind.rsi(int(p.rsi_period))[at]
        ok = (rsi >= p.rsi_low) & (rsi <= p.rsi_high)
        if ctx.instrument.has_volume:
            late = from_open[at] + interval_minutes - p.range_minutes > p.late_entry_minutes
            mean_volume = ctx.ind.volume_sma(int(p.volume_period))[at]
            volume = bars.volume[at]
            ok &= ~late | ((volume >= p.late_volume_mult * mean_volume) & (volume > 0))
        long_ok = (
            ok
            & (bias == LONG)
            & (close > range_high)
            & ((close - range_high) / range_high * 100.0 >= p.min_breakout_pct)
        )
        short_ok = (
            ok & (bias == SHORT) & (close < range_low) & ((range_low - close) / range_low * 100.0 >= p.min_breakout_pct)
        )
        day = ctx.session_day[at]
        signals = SignalArrays.none(n, p.reward_risk)
        for side_ok, side, edge in ((long_ok, LONG, range_high), (short_ok, SHORT, range_low)):
            first_of_day = _day_starts(day[side_ok])  # at most one signal per side per session day
            fire = at[side_ok][first_of_day]
            signals.direction[fire] = side
            signals.stop[fire] = edge[side_ok][first_of_day]
        fired = np.flatnonzero(signals.direction)
        signals.entry[fired] = bars.close[fired]
        signals.target[fired] = signals.entry[fired] + p.reward_risk * (signals.entry[fired] - signals.stop[fired])
        return signals

    def explain(self, ctx: MarketContext, i: int, side: Side) -> tuple[str, ...]:
        p = self.params
        close = float(ctx.bars.close[i])
        at = np.array([i], dtype=np.int64)
        range_high, range_low = (float(v[0]) for v in self._range_levels(ctx, at))
        htf = ctx.higher(_BIAS_INTERVAL)
        k = int(htf.index[i])
        bias_close = float(htf.bars.close[k]) if k >= 0 else math.nan
        bias_sma = float(htf.ind.sma(int(p.bias_sma))[k]) if k >= 0 else math.nan
        if side is Side.LONG:
            edge, word, bias, relation = range_high, "high", "up", ">"
            strength = (close - edge) / edge * 100.0
        else:
            edge, word, bias, relation = range_low, "low", "down", "<"
            strength = (edge - close) / edge * 100.0
        reasons = [
            f"close {close:.2f} broke {p.range_minutes}-min range {word} {edge:.2f} by {strength:.2f}%",
            f"1h bias {bias}: close {bias_close:.2f} {relation} SMA{int(p.bias_sma)} {bias_sma:.2f}",
            f"RSI {ctx.ind.rsi(int(p.rsi_period))[i]:.0f}",
        ]
        after_range = int(ctx.minutes_from_open[i]) + _interval_minutes(ctx.bars.interval) - p.range_minutes
        if not ctx.instrument.has_volume:
            reasons.append("no volume data: late-entry volume rule skipped")
        elif after_range > p.late_entry_minutes:
            mean = float(ctx.ind.volume_sma(int(p.volume_period))[i])
            ratio = float(ctx.bars.volume[i]) / mean if mean > 0 else math.inf
            reasons.append(f"late entry {after_range} min after range: volume {ratio:.1f}x {p.volume_period}-bar mean")
        else:
            reasons.append(f"early entry {after_range} min after range: no volume rule")
        return tuple(reasons)
