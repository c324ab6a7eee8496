"""Builders for small hand-made bar series used by unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from engine.bars import Bars, to_nanos
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.domain import Instrument, Interval
from engine.indicators import MarketContext


def make_bars(
    close: Sequence[float],
    *,
    open: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    low: Sequence[float] | None = None,
    volume: Sequence[float] | None = None,
    start: datetime = datetime(2025, 1, 6, 3, 45, tzinfo=UTC),
    interval: Interval = Interval.M5,
    times: Sequence[datetime] | None = None,
) -> Bars:
    """Bars from price lists; open defaults to the previous close, high/low to the body's extremes."""
    c = np.asarray(close, dtype=np.float64)
    o = np.asarray(open, dtype=np.float64) if open is not None else np.r_[c[:1], c[:-1]]
    h = np.asarray(high, dtype=np.float64) if high is not None else np.maximum(o, c)
    lo = np.asarray(low, dtype=np.float64) if low is not None else np.minimum(o, c)
    v = np.asarray(volume, dtype=np.float64) if volume is not None else np.full(len(c), 1000.0)
    if times is not None:
        t = np.array([to_nanos(x) for x in times], dtype=np.int64)
    else:
        t = to_nanos(start) + np.arange(len(c), dtype=np.int64) * interval.nanos
    return Bars(interval, t, o, h, lo, c, v)


def make_context(bars: Bars, symbol: str = "RELIANCE", **overrides: object) -> MarketContext:
    """A MarketContext over `bars` for a built-in instrument, with its interval set to the bars'."""
    instrument: Instrument = replace(default_instrument(symbol), interval=bars.interval, **overrides)  # type: ignore[arg-type]
    return MarketContext(instrument, bars, get_calendar(instrument.calendar))
