"""No look-ahead, for every registered strategy on every shared file it applies to.

The scored setup at bar t (strategy, validation and quality score together) must be identical whether the
engine sees the whole history or only the bars up to t. Checked at every bar that fired, at the bar after
each (a signal must not appear or vanish once its bar is in the past), and at random quiet bars.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import pytest

from engine.bars import from_nanos
from engine.calendars import get_calendar
from engine.catalog import DEFAULT_WATCHLIST
from engine.domain import Interval
from engine.indicators import MarketContext
from engine.pipeline import EngineConfig, scan_instrument
from engine.strategy import REGISTRY, strategy_names
from tests.support import MARKET_DIR, require_market_dir, shared_bars

SAMPLES_PER_KIND = 12

DAILY = ("EURUSD", "GBPUSD", "XAUUSD", "SPY", "QQQ", "AAPL", "MSFT")
FILES = [(i.symbol, i.interval.value) for i in DEFAULT_WATCHLIST] + [(s, "1d") for s in DAILY]


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for name in strategy_names():
        strategy = REGISTRY[name]()
        for symbol, interval in FILES:
            instrument = replace(next(i for i in DEFAULT_WATCHLIST if i.symbol == symbol), interval=Interval(interval))
            if strategy.applies_to(instrument):
                cases.append((name, symbol, interval))
    return cases


@pytest.mark.parametrize(("name", "symbol", "interval"), _cases())
def test_setups_at_t_do_not_change_when_later_bars_are_removed(name: str, symbol: str, interval: str) -> None:
    require_market_dir()
    instrument = replace(next(i for i in DEFAULT_WATCHLIST if i.symbol == symbol), interval=Interval(interval))
    calendar = get_calendar(instrument.calendar)
    bars = shared_bars(symbol, interval)
    strategy = REGISTRY[name]()
    config = EngineConfig()
    full = MarketContext(instrument, bars, calendar)
    fired = strategy.signals(full).fired()
    fired = fired[fired >= strategy.warmup]

    rng = np.random.default_rng(zlib.crc32(f"{name}{symbol}{interval}".encode()))
    quiet = np.setdiff1d(np.arange(strategy.warmup, len(bars) - 1), fired)
    picks = set(rng.choice(fired, min(SAMPLES_PER_KIND, len(fired)), replace=False).tolist()) if len(fired) else set()
    picks |= {t + 1 for t in picks if t + 1 < len(bars)}
    picks |= set(rng.choice(quiet, min(SAMPLES_PER_KIND, len(quiet)), replace=False).tolist())

    for t in sorted(picks):
        now = from_nanos(int(bars.close_time[t]))
        seen_with_future = scan_instrument(full, [strategy], config, now, np.array([t]))
        truncated = MarketContext(instrument, bars.head(t + 1), calendar)
        seen_at_t = scan_instrument(truncated, [strategy], config, now)
        where = f"{name} on {symbol} {interval} at bar {t} ({now:%Y-%m-%d %H:%M}Z)"
        assert seen_with_future == seen_at_t, f"look-ahead: {where}"


def test_every_strategy_is_checked_on_real_data() -> None:
    if not MARKET_DIR.is_dir():
        pytest.skip("../shared/data/market is absent")
    checked = {name for name, _, _ in _cases()}
    assert checked == set(strategy_names())
