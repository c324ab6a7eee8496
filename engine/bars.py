"""Closed OHLCV bars as numpy arrays, multi-timeframe resampling and causal alignment.

A bar is identified by its open time (UTC, int64 nanoseconds); it is *closed*, and therefore visible to
a strategy, once `open time + interval <= now`. Everything here is vectorised: no per-bar Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from engine.domain import Interval, ensure_utc

if TYPE_CHECKING:
    import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_nanos(ts: datetime) -> int:
    """Convert a UTC datetime to integer nanoseconds since the epoch."""
    delta = ensure_utc(ts, "timestamp") - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def from_nanos(ns: int) -> datetime:
    """Convert integer nanoseconds since the epoch to a UTC datetime (microsecond resolution, like datetime)."""
    return _EPOCH + timedelta(microseconds=int(ns) // 1000)


@dataclass(frozen=True, eq=False, slots=True)
class Bars:
    """Closed bars of one instrument at one interval, oldest first; arrays are read-only views."""

    interval: Interval
    time: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        n = len(self.time)
        for name in OHLCV_COLUMNS:
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} values, expected {n} like time")
        if n > 1 and not bool(np.all(np.diff(self.time) > 0)):
            raise ValueError("bar times must be strictly increasing")

    def __len__(self) -> int:
        return len(self.time)

    @property
    def close_time(self) -> IntArray:
        """Close time of each bar (open time + interval), nanoseconds UTC."""
        return self.time + self.interval.nanos

    def bar_time(self, i: int) -> datetime:
        """Open time of bar `i` as a UTC datetime."""
        return from_nanos(int(self.time[i]))

    def head(self, n: int) -> Bars:
        """Return the first `n` bars (views, no copy)."""
        return self._slice(slice(None, n))

    def window(self, start: int, stop: int) -> Bars:
        """Return bars `start..stop-1` (views, no copy)."""
        return self._slice(slice(start, stop))

    def _slice(self, part: slice) -> Bars:
        """A view of already-validated bars: the invariants hold for any slice, so they are not re-checked."""
        view = object.__new__(Bars)
        object.__setattr__(view, "interval", self.interval)
        for name in ("time", *OHLCV_COLUMNS):
            object.__setattr__(view, name, getattr(self, name)[part])
        return view

    def tail(self, n: int) -> Bars:
        """Return the last `n` bars (views, no copy)."""
        return self._slice(slice(max(len(self) - n, 0), None))

    def visible_at(self, as_of: datetime) -> Bars:
        """Return the bars already closed at `as_of` (a bar closing exactly at `as_of` is visible)."""
        cutoff = to_nanos(as_of) - self.interval.nanos
        return self.head(int(np.searchsorted(self.time, cutoff, side="right")))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, interval: Interval) -> Bars:
        """Build from a frame indexed by UTC open time with open/high/low/close/volume columns."""
        import pandas as pd  # noqa: PLC0415 - pandas is for the data adapters; light commands never load it

        index = frame.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
            raise ValueError("bars frame must have a timezone-aware DatetimeIndex")
        times = index.tz_convert("UTC").as_unit("ns").asi8.astype(np.int64, copy=True)
        arrays = {c: np.ascontiguousarray(frame[c].to_numpy(dtype=np.float64)) for c in OHLCV_COLUMNS}
        return cls(interval, times, **arrays)

    def to_frame(self) -> pd.DataFrame:
        """Return the bars as a frame indexed by UTC open time."""
        import pandas as pd  # noqa: PLC0415 - pandas is for the data adapters; light commands never load it

        index = pd.DatetimeIndex(pd.to_datetime(self.time, unit="ns", utc=True), name="timestamp")
        return pd.DataFrame({c: getattr(self, c) for c in OHLCV_COLUMNS}, index=index)


def resample(bars: Bars, target: Interval, origin_ns: int = 0) -> Bars:
    """Aggregate bars into `target` bins starting at `origin_ns + k * target`; partial bins are kept.

    Whether a bin is complete is a question of time, answered by `align`, never of which bars exist.
    """
    if target.nanos < bars.interval.nanos:
        raise ValueError(f"cannot resample {bars.interval} bars down to {target}")
    if len(bars) == 0:
        empty = np.empty(0)
        return Bars(target, np.empty(0, dtype=np.int64), empty, empty, empty, empty, empty)
    step = target.nanos
    bins = (bars.time - origin_ns) // step
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    ends = np.r_[starts[1:], len(bars)] - 1
    return Bars(
        target,
        (bins[starts] * step + origin_ns).astype(np.int64),
        bars.open[starts],
        np.maximum.reduceat(bars.high, starts),
        np.minimum.reduceat(bars.low, starts),
        bars.close[ends],
        np.add.reduceat(bars.volume, starts),
    )


def align(base: Bars, higher: Bars) -> IntArray:
    """For each base bar, the index of the last higher-timeframe bin fully closed by that bar's close.

    -1 where no bin has closed yet. A bin [s, s + target) counts as closed at `s + target`, so a partial
    bin (session end, data gap, the forming bin at the edge of history) is never used early.
    """
    return np.searchsorted(higher.close_time, base.close_time, side="right").astype(np.int64) - 1


def take_aligned(values: FloatArray, index: IntArray) -> FloatArray:
    """Pick `values[index]` with NaN where `index` is -1."""
    out = np.full(len(index), np.nan)
    ok = index >= 0
    out[ok] = values[index[ok]]
    return out
