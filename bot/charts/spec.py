"""What a price chart shows, as plain picklable data: bars, indicator lines, price levels and a marked bar.

Built by the services from the bars a run used; drawn by `bot.charts.render` in a worker process, so nothing here
imports matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from engine.bars import Bars, FloatArray, IntArray

CHART_BARS = 90  # candles on a signal chart: the setup's context, still readable on a phone


class LevelKind(StrEnum):
    """What a horizontal line on the chart is; the renderer colours it by kind."""

    ENTRY = "entry"
    STOP = "stop"
    TARGET = "target"
    POSITION = "position"
    ZONE = "zone"


@dataclass(frozen=True, slots=True)
class Level:
    """A labelled horizontal price line."""

    kind: LevelKind
    label: str
    price: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.price) or self.price <= 0:
            raise ValueError(f"a chart level's price must be positive and finite, was {self.price} ({self.label})")


@dataclass(frozen=True, slots=True, eq=False)
class ChartSpec:
    """One chart: bars (UTC bar-open nanoseconds), lines over them, levels, and the bar to mark."""

    title: str
    timezone: str
    time: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    overlays: tuple[tuple[str, FloatArray], ...] = ()
    levels: tuple[Level, ...] = ()
    marked: int | None = None
    marked_long: bool = True  # the marker points up under a long's signal bar, down over a short's
    footer: str = ""
    price_format: str = ".5f"
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.time)
        if n == 0:
            raise ValueError(f"a chart needs at least one bar ({self.title})")
        for name in ("open", "high", "low", "close"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"chart {name} has {len(getattr(self, name))} values, expected {n}")
        for label, values in self.overlays:
            if len(values) != n:
                raise ValueError(f"overlay {label} has {len(values)} values, expected {n}")
        if self.marked is not None and not 0 <= self.marked < n:
            raise ValueError(f"the marked bar must be within 0..{n - 1}, was {self.marked}")


def window(bars: Bars, last: int, count: int = CHART_BARS) -> slice:
    """The slice of `count` bars ending at bar `last` (inclusive)."""
    if not 0 <= last < len(bars):
        raise ValueError(f"the chart's last bar must be within 0..{len(bars) - 1}, was {last}")
    return slice(max(0, last + 1 - count), last + 1)


def chart_of(
    bars: Bars,
    part: slice,
    *,
    title: str,
    timezone: str,
    overlays: dict[str, FloatArray] | None = None,
    levels: tuple[Level, ...] = (),
    marked: int | None = None,
    marked_long: bool = True,
    footer: str = "",
    price_format: str = ".5f",
) -> ChartSpec:
    """A chart of `bars[part]` with full-length `overlays` cut to the same bars; `marked` indexes `bars`."""
    start = part.start or 0
    lines = tuple((label, np.asarray(values[part], dtype=float)) for label, values in (overlays or {}).items())
    lines = tuple((label, v) for label, v in lines if np.isfinite(v).any())  # a line not warmed up is not drawn
    return ChartSpec(
        title=title,
        timezone=timezone,
        time=np.asarray(bars.time[part]),
        open=np.asarray(bars.open[part]),
        high=np.asarray(bars.high[part]),
        low=np.asarray(bars.low[part]),
        close=np.asarray(bars.close[part]),
        overlays=lines,
        levels=levels,
        marked=None if marked is None else marked - start,
        marked_long=marked_long,
        footer=footer,
        price_format=price_format,
    )
