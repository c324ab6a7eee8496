"""TA-Lib indicators over numpy arrays, computed at most once per symbol per run and shared.

`Indicators` memoises every call by name and parameters, so the strategies and the quality score that
all ask for RSI(14) get one array computed once. Every TA-Lib function used here is causal: the value at
bar t depends on bars up to t only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import talib

from engine.bars import Bars, BoolArray, FloatArray, IntArray, align, resample, take_aligned
from engine.calendars import SessionCalendar
from engine.domain import Instrument, Interval

_DAY_NS = 86_400 * 1_000_000_000
_MINUTE_NS = 60 * 1_000_000_000
BULLISH = 1
_SMA_MATYPE: Any = 0  # talib.MA_Type.SMA
BEARISH = -1


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
        return self._memo(("rsi", period), lambda: talib.RSI(self.bars.close, timeperiod=period))

    def atr(self, period: int = 14) -> FloatArray:
        b = self.bars
        return self._memo(("atr", period), lambda: talib.ATR(b.high, b.low, b.close, timeperiod=period))

    def ema(self, period: int) -> FloatArray:
        return self._memo(("ema", period), lambda: talib.EMA(self.bars.close, timeperiod=period))

    def sma(self, period: int) -> FloatArray:
        return self._memo(("sma", period), lambda: talib.SMA(self.bars.close, timeperiod=period))

    def bbands(self, period: int = 20, width: float = 2.0) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Upper, middle and lower Bollinger bands."""
        return self._memo(
            ("bbands", period, width),
            lambda: talib.BBANDS(self.bars.close, timeperiod=period, nbdevup=width, nbdevdn=width, matype=_SMA_MATYPE),
        )

    def macd(self, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[FloatArray, FloatArray, FloatArray]:
        """MACD line, signal line and histogram."""
        return self._memo(
            ("macd", fast, slow, signal),
            lambda: talib.MACD(self.bars.close, fastperiod=fast, slowperiod=slow, signalperiod=signal),
        )

    def volume_sma(self, period: int = 20) -> FloatArray:
        return self._memo(("volume_sma", period), lambda: talib.SMA(self.bars.volume, timeperiod=period))

    def highest(self, period: int) -> FloatArray:
        """Highest high of the last `period` bars including the current one."""
        return self._memo(("highest", period), lambda: talib.MAX(self.bars.high, timeperiod=period))

    def lowest(self, period: int) -> FloatArray:
        """Lowest low of the last `period` bars including the current one."""
        return self._memo(("lowest", period), lambda: talib.MIN(self.bars.low, timeperiod=period))

    def pattern(self, name: str) -> IntArray:
        """A TA-Lib candlestick pattern (`CDLENGULFING`, ...) as +1 bullish, -1 bearish, 0 none."""

        def compute() -> IntArray:
            func = getattr(talib, name)
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
