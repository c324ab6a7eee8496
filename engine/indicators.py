"""TA-Lib indicators over numpy arrays, computed at most once per symbol per run and shared.

`Indicators` memoises every call by name and parameters, so the strategies and the quality score that
all ask for RSI(14) get one array computed once. Every function used here is causal: the value at bar t
depends on bars up to t only.

Moving averages over a fixed window (SMA, the volume SMA, Bollinger bands) are computed here, not by TA-Lib:
each value is the sum of its own window added in one fixed order, so it is the same double wherever the
history starts. TA-Lib keeps a running sum from the first bar, whose rounding depends on where the loaded
history begins; prices on a 0.01 grid make means land exactly on a display boundary (an SMA50 of 1324.075), and
a live window would then show 1324.07 where the backtest shows 1324.08. Recursive indicators (EMA, RSI, ATR,
MACD) stay TA-Lib's; their dependence on the start is what `ema_history` and `wilder_history` bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final

import numpy as np

from engine.bars import Bars, BoolArray, FloatArray, IntArray, align, resample, take_aligned
from engine.calendars import SessionCalendar
from engine.domain import Instrument, Interval

CONVERGENCE: Final = 1e-9
"""Weight a recursive indicator's seed may still carry at the bar a live scan reads, so that a scan over its
declared history decides as a backtest over all of history does (see `ema_history`)."""
_DAY_NS = 86_400 * 1_000_000_000
_MINUTE_NS = 60 * 1_000_000_000
BULLISH = 1
BEARISH = -1


def ta() -> Any:
    """The TA-Lib module, imported on first use (it imports pandas, which commands that only read settings and
    the database never need)."""
    import talib  # noqa: PLC0415

    return talib


@dataclass(eq=False)
class Indicators:
    """Memoised TA-Lib indicators of one `Bars`."""

    bars: Bars
    _cache: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def memo(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """Compute a derived array once per bars (strategies use it for their own combinations)."""
        return self._memo(("derived", *key), compute)

    def _memo(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = compute()
            return value

    def rsi(self, period: int = 14) -> FloatArray:
        return self._memo(("rsi", period), lambda: ta().RSI(self.bars.close, timeperiod=period))

    def atr(self, period: int = 14) -> FloatArray:
        b = self.bars
        return self._memo(("atr", period), lambda: ta().ATR(b.high, b.low, b.close, timeperiod=period))

    def ema(self, period: int) -> FloatArray:
        return self._memo(("ema", period), lambda: ta().EMA(self.bars.close, timeperiod=period))

    def sma(self, period: int) -> FloatArray:
        return self._memo(("sma", period), lambda: window_mean(self.bars.close, period))

    def bbands(self, period: int = 20, width: float = 2.0) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Upper, middle and lower Bollinger bands: SMA +/- width x the window's population standard deviation."""

        def compute() -> tuple[FloatArray, FloatArray, FloatArray]:
            middle = window_mean(self.bars.close, period)
            spread = width * np.sqrt(window_variance(self.bars.close, period, middle))
            return middle + spread, middle, middle - spread

        result: tuple[FloatArray, FloatArray, FloatArray] = self._memo(("bbands", period, width), compute)
        return result

    def macd(self, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[FloatArray, FloatArray, FloatArray]:
        """MACD line, signal line and histogram."""
        return self._memo(
            ("macd", fast, slow, signal),
            lambda: ta().MACD(self.bars.close, fastperiod=fast, slowperiod=slow, signalperiod=signal),
        )

    def volume_sma(self, period: int = 20) -> FloatArray:
        return self._memo(("volume_sma", period), lambda: window_mean(self.bars.volume, period))

    def highest(self, period: int) -> FloatArray:
        """Highest high of the last `period` bars including the current one."""
        return self._memo(("highest", period), lambda: ta().MAX(self.bars.high, timeperiod=period))

    def lowest(self, period: int) -> FloatArray:
        """Lowest low of the last `period` bars including the current one."""
        return self._memo(("lowest", period), lambda: ta().MIN(self.bars.low, timeperiod=period))

    def pattern(self, name: str) -> IntArray:
        """A TA-Lib candlestick pattern (`CDLENGULFING`, ...) as +1 bullish, -1 bearish, 0 none."""

        def compute() -> IntArray:
            func = getattr(ta(), name)
            b = self.bars
            raw = func(b.open, b.high, b.low, b.close)
            return np.sign(raw).astype(np.int64)

        return self._memo(("pattern", name), compute)

    def percentile_rank(self, values_key: str, values: FloatArray, window: int) -> FloatArray:
        """Rank (0..1) of each value among the previous `window` values including itself; causal."""

        def compute() -> FloatArray:
            out = np.full(len(values), np.nan)
            if len(values) < window:
                return out
            windows = np.lib.stride_tricks.sliding_window_view(values, window)
            current = windows[:, -1:]
            valid = ~np.isnan(windows)
            less_equal = np.sum((windows <= current) & valid, axis=1)
            counts = np.sum(valid, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                ranks = np.where(np.isnan(current[:, 0]) | (counts < window // 2), np.nan, less_equal / counts)
            out[window - 1 :] = ranks
            return out

        return self._memo(("percentile_rank", values_key, window), compute)


@dataclass(frozen=True, eq=False)
class HigherTimeframe:
    """Bars resampled to a higher interval, their indicators, and the causal map back to base bars."""

    bars: Bars
    ind: Indicators
    index: IntArray

    def on_base(self, values: FloatArray) -> FloatArray:
        """Project a higher-timeframe array onto base bars using only closed higher bins."""
        return take_aligned(values, self.index)


@dataclass(eq=False)
class MarketContext:
    """Everything a strategy may look at for one instrument: bars, calendar and shared indicators."""

    instrument: Instrument
    bars: Bars
    calendar: SessionCalendar
    ind: Indicators = field(init=False)
    _higher: dict[Interval, HigherTimeframe] = field(default_factory=dict, init=False, repr=False)
    _session: dict[str, IntArray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.bars.interval != self.instrument.interval:
            raise ValueError(
                f"{self.instrument.symbol}: bars are {self.bars.interval} but the instrument is configured "
                f"for {self.instrument.interval}"
            )
        self.ind = Indicators(self.bars)

    def __len__(self) -> int:
        return len(self.bars)

    def higher(self, interval: Interval) -> HigherTimeframe:
        """The bars resampled to `interval`, aligned so bin edges sit on the session open."""
        try:
            return self._higher[interval]
        except KeyError:
            pass
        if interval == self.bars.interval:
            htf_bars = self.bars
            index = np.arange(len(self.bars), dtype=np.int64)
        else:
            origin = _session_origin_ns(self.calendar, interval)
            htf_bars = resample(self.bars, interval, origin)
            index = align(self.bars, htf_bars)
        htf = self._higher[interval] = HigherTimeframe(htf_bars, Indicators(htf_bars), index)
        return htf

    @property
    def local_time(self) -> IntArray:
        """Exchange-local wall-clock time of each bar's open, as naive nanoseconds (computed once)."""
        return self._session_array("local", lambda: self.calendar.local_nanos(self.bars.time))

    @property
    def session_day(self) -> IntArray:
        """Trading-date id of each bar."""
        return self._session_array("day", lambda: (self.local_time - self._open_ns) // _DAY_NS)

    @property
    def exit_session(self) -> IntArray:
        """Session id for the intraday exit: bars from the calendar's flat time (or early close) on split off."""
        return self._session_array("exit", lambda: self.calendar.exit_session(self.bars.time))

    @property
    def minutes_from_open(self) -> IntArray:
        """Minutes from the session open to each bar's open time."""
        return self._session_array("from_open", lambda: ((self.local_time - self._open_ns) % _DAY_NS) // _MINUTE_NS)

    @property
    def local_minute(self) -> IntArray:
        """Exchange-local minute of day of each bar's open time."""
        return self._session_array("local_minute", lambda: (self.local_time % _DAY_NS) // _MINUTE_NS)

    @property
    def _open_ns(self) -> int:
        return int(self.calendar.open_offset.total_seconds()) * 1_000_000_000

    def _session_array(self, key: str, compute: Callable[[], IntArray]) -> IntArray:
        try:
            return self._session[key]
        except KeyError:
            value = self._session[key] = compute()
            return value


def _session_origin_ns(calendar: SessionCalendar, interval: Interval) -> int:
    """Bin origin putting intraday bin edges on the session open (09:15 IST gives 1h bins at :45 UTC).

    The grid is fixed in UTC, taken from the first session of 2024; for markets with daylight saving the
    bins sit on the winter open. Daily and longer bins start at UTC midnight, like the daily CSV labels.
    """
    if not interval.is_intraday:
        return 0
    day = date(2024, 1, 1)
    for _ in range(14):
        bounds = calendar.session(day)
        if bounds is not None:
            opened = bounds[0]
            return ((opened.hour * 60 + opened.minute) * 60 * 1_000_000_000) % interval.nanos
        day += timedelta(days=1)
    return 0


def window_sum(values: FloatArray, period: int) -> FloatArray:
    """Sum of each bar's last `period` values (NaN before there are that many), independent of where they start.

    The window's values are added oldest first, one shifted array at a time: elementwise additions in a fixed
    order, so a bar's sum is the same double in a series that starts anywhere before its window.
    """
    if period < 1:
        raise ValueError(f"a window needs at least 1 bar, was {period}")
    n = len(values)
    out = np.full(n, np.nan)
    if n >= period:
        m = n - period + 1
        total = values[:m].astype(np.float64, copy=True)
        for k in range(1, period):
            total += values[k : k + m]
        out[period - 1 :] = total
    return out


def window_mean(values: FloatArray, period: int) -> FloatArray:
    """Mean of each bar's last `period` values (`window_sum` / period)."""
    return window_sum(values, period) / period


def window_variance(values: FloatArray, period: int, mean: FloatArray) -> FloatArray:
    """Population variance of each bar's last `period` values around its window `mean`, window by window."""
    n = len(values)
    out = np.full(n, np.nan)
    if n >= period:
        m = n - period + 1
        centre = mean[period - 1 :]
        total = np.zeros(m)
        for k in range(period):
            deviation = values[k : k + m] - centre
            total += deviation * deviation
        out[period - 1 :] = total / period
    return out


def ema_history(period: int) -> int:
    """Bars TA-Lib's EMA(period) needs before its SMA seed weighs at most `CONVERGENCE`.

    EMA = a x close + (1 - a) x EMA[-1] with a = 2 / (period + 1), seeded with the SMA of the first `period`
    closes; after k more bars the seed weighs (1 - a)^k. Two EMAs started at different bars therefore agree
    to within CONVERGENCE x (the gap between their seeds) once both have this much history. An EMA200 needs
    2,262 bars; on 4h bins of 1h bars that is over 9,000 base bars, which a 2,000-bar window never had.
    """
    return period - 1 + _decay_bars(1.0 - 2.0 / (period + 1))


def wilder_history(period: int) -> int:
    """Bars a Wilder-smoothed TA-Lib indicator (RSI, ATR: weight 1/period) needs to converge, seed included."""
    return period + _decay_bars(1.0 - 1.0 / period)


def macd_history(fast: int = 12, slow: int = 26, signal: int = 9) -> int:
    """Bars TA-Lib's MACD histogram needs to converge: its slow EMA, then the signal EMA of the MACD line."""
    return max(ema_history(fast), ema_history(slow)) + ema_history(signal)


def higher_bars(base: Interval, higher: Interval, bins: int) -> int:
    """Base bars that always hold `bins` fully closed bins of `higher` (a bin holds at most higher/base bars)."""
    return (bins + 1) * max(higher.nanos // base.nanos, 1)


def _decay_bars(keep: float) -> int:
    """Steps after which a weight multiplied by `keep` each step is at most `CONVERGENCE`."""
    return 0 if keep <= 0.0 else math.ceil(math.log(CONVERGENCE) / math.log(keep))


def crossed_above(series: FloatArray, level: FloatArray | float) -> BoolArray:
    """True where `series` moves from <= level on the previous bar to > level now."""
    prev_series = np.r_[np.nan, series[:-1]]
    prev_level = np.r_[np.nan, level[:-1]] if isinstance(level, np.ndarray) else level
    with np.errstate(invalid="ignore"):
        return (prev_series <= prev_level) & (series > level)


def crossed_below(series: FloatArray, level: FloatArray | float) -> BoolArray:
    """True where `series` moves from >= level on the previous bar to < level now."""
    prev_series = np.r_[np.nan, series[:-1]]
    prev_level = np.r_[np.nan, level[:-1]] if isinstance(level, np.ndarray) else level
    with np.errstate(invalid="ignore"):
        return (prev_series >= prev_level) & (series < level)


def shift(values: FloatArray, n: int = 1) -> FloatArray:
    """Values `n` bars ago (NaN for the first `n` bars)."""
    out = np.full(len(values), np.nan)
    if n < len(values):
        out[n:] = values[: len(values) - n]
    return out
