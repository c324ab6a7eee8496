"""Charts for the chat: each signal over the bars its run saw, and a symbol's current chart with its positions.

Builds what a chart shows (`bot.charts.spec`) from the bars, the strategy's own indicator lines and the signal's
levels, and asks a `ChartRenderer` (a worker process in the running bot) to draw it. A chart that cannot be made is
None: the caller sends text, on time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

import numpy as np

from bot.charts.spec import ChartSpec, Level, LevelKind, chart_of, window
from bot.services.scan import WatchItem
from engine.bars import Bars, FloatArray, to_nanos
from engine.domain import Instrument, Setup, Side
from engine.indicators import MarketContext
from engine.ports import SignalRecord
from engine.strategy import Strategy
from engine.trading import Trade

log = logging.getLogger(__name__)


class ChartRenderer(Protocol):
    """Draws a chart: PNG bytes, or None when it failed or took too long."""

    async def render(self, spec: ChartSpec) -> bytes | None: ...

    async def draw(self, what: str, build: Callable[..., ChartSpec | None], *args: Any) -> bytes | None:
        """Build the chart `what` with `build(*args)` where it is drawn, then draw it (None: no chart)."""
        ...

    async def warm(self) -> None:
        """Get ready to draw (start a worker, import the drawing libraries), so the first chart is not late."""
        ...


def price_format(instrument: Instrument) -> str:
    """Format spec showing prices to the instrument's tick."""
    exponent = instrument.tick_size.normalize().as_tuple().exponent
    return f".{-exponent if isinstance(exponent, int) and exponent < 0 else 0}f"


def setup_levels(setup: Setup) -> tuple[Level, ...]:
    """Entry, stop and every target of a setup as chart levels."""
    targets = [
        Level(LevelKind.TARGET, "target" if len(setup.targets) == 1 else f"target {k}", float(t))
        for k, t in enumerate(setup.targets, start=1)
    ]
    return (
        Level(LevelKind.ENTRY, "entry", float(setup.entry)),
        Level(LevelKind.STOP, "stop", float(setup.stop)),
        *targets,
    )


class SignalCharts:
    """Builds and draws the charts of signals and symbols."""

    def __init__(self, watchlist: Sequence[WatchItem], renderer: ChartRenderer) -> None:
        self.items = {w.instrument.symbol: w for w in watchlist}
        self.renderer = renderer
        self._warming: asyncio.Task[None] | None = None

    def prepare(self) -> None:
        """Start getting the renderer ready in the background (called as an analysis begins, so it overlaps it)."""
        if self._warming is None:
            self._warming = asyncio.create_task(self.renderer.warm(), name="chart-worker-warm-up")

    def signal_spec(self, setup: Setup, bars: Bars) -> ChartSpec | None:
        """The chart of a setup over `bars` (its signal bar marked); None when the bars do not hold its bar."""
        item = self.items.get(setup.symbol)
        return None if item is None else signal_chart(item, setup, bars)

    def symbol_spec(
        self, symbol: str, bars: Bars, positions: Sequence[Trade], stops: Mapping[str, Decimal]
    ) -> ChartSpec:
        """The current chart of `symbol`: the last bars, its strategies' lines, each open position's levels."""
        return symbol_chart(self.items[symbol], bars, positions, stops)

    async def for_signals(self, records: Sequence[SignalRecord], bars: Mapping[str, Bars]) -> dict[str, bytes]:
        """PNG charts of these signals by signal id (those that could be drawn)."""
        charts: dict[str, bytes] = {}
        for record in records:
            setup = record.scored.setup
            symbol_bars = bars.get(setup.symbol)
            if symbol_bars is None:
                continue
            item = self.items.get(setup.symbol)
            if item is None:
                continue
            png = await self.renderer.draw(f"of signal {record.signal_id}", signal_chart, item, setup, symbol_bars)
            if png is not None:
                charts[record.signal_id] = png
        return charts

    async def for_symbol(
        self, symbol: str, bars: Bars, positions: Sequence[Trade], stops: Mapping[str, Decimal]
    ) -> bytes | None:
        """The PNG chart of `symbol` with these positions, or None when it could not be drawn."""
        return await self.renderer.draw(f"of {symbol}", symbol_chart, self.items[symbol], bars, positions, stops)


def signal_chart(item: WatchItem, setup: Setup, bars: Bars) -> ChartSpec | None:
    """The chart of a setup over `bars` (its signal bar marked); None when the bars do not hold its bar."""
    if bars.interval != setup.timeframe:
        return None
    at = int(np.searchsorted(bars.time, to_nanos(setup.bar_time)))
    if at >= len(bars) or int(bars.time[at]) != to_nanos(setup.bar_time):
        return None
    strategy = next((s for s in item.strategies if s.name == setup.strategy), None)
    local = setup.bar_time.astimezone(item.calendar.zone)
    return chart_of(
        bars,
        window(bars, at),
        title=f"{setup.symbol} {setup.timeframe} · {setup.strategy} {setup.side.value}",
        timezone=item.calendar.timezone,
        overlays=_overlays([] if strategy is None else [strategy], item, bars),
        levels=setup_levels(setup),
        marked=at,
        marked_long=setup.side is Side.LONG,
        footer=f"signal {setup.signal_id} · bar of {local:%a %d %b %H:%M} {item.calendar.timezone}",
        price_format=price_format(item.instrument),
    )


def symbol_chart(item: WatchItem, bars: Bars, positions: Sequence[Trade], stops: Mapping[str, Decimal]) -> ChartSpec:
    """The current chart of an instrument: the last bars, its strategies' lines, each open position's levels."""
    levels: list[Level] = []
    for trade in positions:
        tag = f"{trade.side.value} {trade.trade_id[:6]}"
        levels.append(Level(LevelKind.POSITION, f"{tag} entry", float(trade.entry_price)))
        levels.append(Level(LevelKind.STOP, f"{tag} stop", float(stops.get(trade.trade_id, trade.stop))))
        levels.append(Level(LevelKind.TARGET, f"{tag} target", float(trade.target)))
    last = len(bars) - 1
    return chart_of(
        bars,
        window(bars, last),
        title=f"{item.instrument.symbol} {bars.interval} · {len(positions)} open "
        f"position{'' if len(positions) == 1 else 's'}",
        timezone=item.calendar.timezone,
        overlays=_overlays(item.strategies, item, bars),
        levels=tuple(levels),
        footer=f"last bar {bars.bar_time(last).astimezone(item.calendar.zone):%a %d %b %H:%M} {item.calendar.timezone}",
        price_format=price_format(item.instrument),
    )


def _overlays(strategies: Sequence[Strategy[Any]], item: WatchItem, bars: Bars) -> dict[str, FloatArray]:
    """The strategies' indicator lines over `bars` (one context: each indicator computed once)."""
    if not strategies or bars.interval != item.instrument.interval:
        return {}
    ctx = MarketContext(item.instrument, bars, item.calendar)
    lines: dict[str, FloatArray] = {}
    for strategy in strategies:
        try:
            lines.update(strategy.overlays(ctx))
        except Exception as exc:  # the lines are a help: a chart without them is still worth sending
            log.warning("no indicator lines for %s on %s: %s", strategy.name, item.instrument.symbol, exc)
    return lines
