"""The live scan decides as the backtest does: with the history its strategies declare, on every shared file.

The bot scans with a window of `ScanService.history_bars` bars ending at the bar that just closed; a backtest
computes every indicator once over all of history. Recursive indicators (EMA, Wilder's RSI and ATR) started at
different bars agree only once their seeds have decayed, which is what `Strategy.history` and
`QualityScorer.history` declare (`engine.indicators.CONVERGENCE`). This test scans with exactly that live window
at every bar where either computation can fire and compares the outcome with the full-history backtest's:
the same setups (levels, reasons), the same quality scores (every component and its reason), the same
rejections. Bars before the window is full see the whole prefix in both, which the look-ahead tests cover.

Candidate bars: where the full-history signals fire, plus where signals computed over coarse windows (starting
exactly one declared history before a block of bars, so at least as short as the live window) fire, so a
setup that only a short window would see is scanned too.

The score's higher-timeframe EMA200 needs 27,276 bars of 5m data, more than the 5m files hold: there the live
window is the whole prefix and equal by causality. So the strategies' own declared histories (900 bars for the
Defining Order, 297 for the pattern reversal) are tested on every file as well, on setups without the score. With
the bot's former 2,000-bar window this test finds 769 of 770 trend_pullback outcomes on BTCUSDT different.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from engine.calendars import get_calendar
from engine.catalog import DEFAULT_WATCHLIST
from engine.domain import Interval, Rejection
from engine.indicators import MarketContext
from engine.pipeline import EngineConfig, ValidationRules, assess, candidates, scan_instrument, validate
from engine.strategy import Strategy, build_strategy, strategy_names
from tests.support import MARKET_DIR, shared_bars

pytestmark = pytest.mark.shared_data

BLOCK = 400  # bars per coarse window beyond the declared history


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for instrument in DEFAULT_WATCHLIST:
        for interval in (instrument.interval.value, Interval.D1.value):
            if not (MARKET_DIR / f"{instrument.symbol}_{interval}.csv").exists() and MARKET_DIR.is_dir():
                continue
            probe = replace(instrument, interval=Interval(interval))
            cases += [(n, instrument.symbol, interval) for n in strategy_names() if build_strategy(n).applies_to(probe)]
    return sorted(set(cases))


def _context(symbol: str, interval: str) -> MarketContext:
    instrument = next(i for i in DEFAULT_WATCHLIST if i.symbol == symbol)
    instrument = replace(instrument, interval=Interval(interval))
    return MarketContext(instrument, shared_bars(symbol, interval), get_calendar(instrument.calendar))


def _outcome(result: Any) -> Any:
    return ("rejected", result.reason) if isinstance(result, Rejection) else ("setup", result)


def _candidate_bars(ctx: MarketContext, strategy: Strategy[Any], history: int) -> tuple[np.ndarray, set[int]]:
    """Bars the full-history signals fire on, and the bars where signals over coarse windows fire."""
    fired = strategy.signals(ctx).fired()
    coarse: set[int] = set()
    for start in range(0, len(ctx) - history + 1, BLOCK):
        stop = min(start + history - 1 + BLOCK, len(ctx))
        window = MarketContext(ctx.instrument, ctx.bars.window(start, stop), ctx.calendar)
        local = strategy.signals(window).fired() + start
        coarse.update(int(t) for t in local if t >= start + history - 1)
    return fired, coarse


@pytest.mark.parametrize(("name", "symbol", "interval"), _cases())
def test_the_live_window_finds_what_the_backtest_finds(name: str, symbol: str, interval: str) -> None:
    ctx = _context(symbol, interval)
    strategy = build_strategy(name)
    engine = EngineConfig()
    history = max(strategy.history(ctx.instrument), engine.scorer.history(ctx.instrument.interval))
    fired, coarse = _candidate_bars(ctx, strategy, history)
    signals = strategy.signals(ctx)
    full = {
        c.bar_index: _outcome(assess(ctx, c, engine, None))
        for c in candidates(strategy, ctx, signals, fired[fired >= history - 1])
    }
    compared = 0
    for t in sorted(set(full) | coarse):
        window = MarketContext(ctx.instrument, ctx.bars.window(t - history + 1, t + 1), ctx.calendar)
        live = scan_instrument(window, [strategy], engine, None)
        outcomes = [_outcome(s) for s in live.setups] + [_outcome(r) for r in live.rejections]
        assert outcomes == ([full[t]] if t in full else []), f"{name} {symbol} {interval} bar {t}"
        compared += 1
    assert compared == len(set(full) | coarse)
    if len(ctx) > history + 500:
        assert len(full) >= 5, f"{name} {symbol} {interval}: the compared span should hold setups"


@pytest.mark.parametrize(("name", "symbol", "interval"), _cases())
def test_the_strategy_alone_decides_the_same_with_its_own_history(name: str, symbol: str, interval: str) -> None:
    ctx = _context(symbol, interval)
    strategy = build_strategy(name)
    history = strategy.history(ctx.instrument)
    assert history < len(ctx) - 500, "every shared file is longer than a strategy's own history"
    fired, coarse = _candidate_bars(ctx, strategy, history)
    rules = ValidationRules()

    def setups(c: MarketContext, bars: np.ndarray) -> dict[int, Any]:
        found = candidates(strategy, c, strategy.signals(c), bars)
        closed = c.instrument.interval.delta
        return {x.bar_index: _outcome(validate(c.instrument, c.calendar, x, x.bar_time + closed, rules)) for x in found}

    full = setups(ctx, fired[fired >= history - 1])
    for t in sorted(set(full) | coarse):
        window = MarketContext(ctx.instrument, ctx.bars.window(t - history + 1, t + 1), ctx.calendar)
        live = setups(window, np.array([history - 1], dtype=np.int64))
        assert list(live.values()) == ([full[t]] if t in full else []), f"{name} {symbol} {interval} bar {t}"
    assert len(full) >= 5
