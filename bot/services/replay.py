"""Replay: run the LIVE scan bar by bar over history, then trade what it found with the backtester's rules.

For every bar of the instrument that opens in [start, end), `ScanService.scan(as_of=that bar's close)` runs
with a clock stopped at that instant: the provider serves only the bars closed by then, `validate_bars`
checks them, and `engine.pipeline` validates and scores the last bar, exactly as the bot does at that
moment. The setups it reports (each once, by signal id) are turned into trades by `engine.backtest.simulate`
over the bars closed by `settle_until` (default: the close of the last bar replayed), the same trade logic
`engine.backtest.backtest` uses.
A full-history backtest and a replay therefore agree signal for signal and trade for trade: this checks the
live *scan* against the backtest. `REPLAY_BAR_RULES` loads the whole file; the bot's own window (the history
each strategy declares, `Strategy.history`) gives the same setups too (tests/integration/test_live_window_parity.py).
The bot's *trading* (desk, paper broker, position monitor, store) is checked against the backtest by
tests/e2e/test_bot_parity.py, which runs the bot itself on its clock.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
import pandas as pd

from bot.services.scan import BarRules, ScanService, WatchItem
from data.market.validation import validate_bars
from engine.backtest import BacktestConfig, simulate
from engine.bars import from_nanos, to_nanos
from engine.domain import ScoredSetup, ensure_utc
from engine.exits import StopTrigger
from engine.indicators import MarketContext
from engine.pipeline import EngineConfig
from engine.ports import BarProvider, ProviderError
from engine.results import BacktestTrade
from engine.trade_book import Simulation, rejection_key

REPLAY_HISTORY_BARS: Final = 10_000_000
REPLAY_BAR_RULES: Final = BarRules(history_bars=REPLAY_HISTORY_BARS)
_NEVER_STALE: Final = 10**9


class ReplayClock:
    """A clock the replay moves to each bar's close (the scan's `started_at` and as-of)."""

    def __init__(self, at: datetime) -> None:
        self.at = ensure_utc(at, "replay clock")

    def now(self) -> datetime:
        return self.at


@dataclass(frozen=True, eq=False)
class ReplayResult:
    """What the live scan found bar by bar, and the trades the backtester's rules make of it."""

    symbol: str
    strategies: tuple[str, ...]
    scans: int
    setups: tuple[ScoredSetup, ...]  # each signal once, in bar order
    rejections: tuple[tuple[str, int], ...]  # reason (numbers masked) -> count over all scans, most frequent first
    errors: tuple[str, ...]
    context: MarketContext  # the bars the trades were settled on
    simulation: Simulation

    @property
    def trades(self) -> tuple[BacktestTrade, ...]:
        return self.simulation.trades

    @property
    def open_trades(self) -> tuple[BacktestTrade, ...]:
        return self.simulation.open_trades


async def replay(
    provider: BarProvider,
    item: WatchItem,
    engine: EngineConfig,
    config: BacktestConfig,
    *,
    start: datetime,
    end: datetime,
    settle_until: datetime | None = None,
    rules: BarRules = REPLAY_BAR_RULES,
) -> ReplayResult:
    """Scan `item` at the close of every bar opening in [start, end) as the live bot would, then simulate trades."""
    ensure_utc(start, "start")
    ensure_utc(end, "end")
    if end <= start:
        raise ValueError(f"replay end {end:%Y-%m-%dT%H:%MZ} must be after its start {start:%Y-%m-%dT%H:%MZ}")
    instrument = item.instrument
    interval = instrument.interval
    frame = provider.fetch(instrument, end + interval.delta, rules.history_bars)
    opens = np.unique(pd.DatetimeIndex(frame.index).as_unit("ns").asi8)
    in_window = opens[(opens >= to_nanos(start)) & (opens < to_nanos(end))]
    closes = [from_nanos(int(ns)) + interval.delta for ns in in_window]

    clock = ReplayClock(start)
    service = ScanService(provider, None, [item], engine, rules, clock)
    found: dict[str, ScoredSetup] = {}
    rejections: Counter[str] = Counter()
    errors: list[str] = []
    for as_of in closes:
        clock.at = as_of
        report = await service.scan(as_of=as_of)
        for scored in report.setups:
            found.setdefault(scored.setup.signal_id, scored)
        rejections.update(rejection_key(r.reason) for r in report.rejections)
        errors.extend(report.errors)

    settle = settle_until if settle_until is not None else (closes[-1] if closes else end)
    ctx = _settlement_context(provider, item, settle, rules.history_bars)
    setups = tuple(sorted(found.values(), key=lambda s: (s.setup.bar_time, s.setup.strategy, s.setup.side.value)))
    triggers = {s.name: s.stop_trigger for s in item.strategies if s.stop_trigger is not StopTrigger.TOUCH}
    if triggers:
        config = dataclasses.replace(config, stop_triggers={**config.stop_triggers, **triggers})
    simulation = simulate(ctx, setups, config, rules=engine.rules)
    return ReplayResult(
        symbol=instrument.symbol,
        strategies=tuple(s.name for s in item.strategies),
        scans=len(closes),
        setups=setups,
        rejections=tuple(rejections.most_common()),
        errors=tuple(errors),
        context=ctx,
        simulation=simulation,
    )


def _settlement_context(provider: BarProvider, item: WatchItem, settle: datetime, history: int) -> MarketContext:
    """Load the bars closed by `settle`, checked as the position monitor checks them, as a context."""
    instrument = item.instrument
    try:
        frame = provider.fetch(instrument, settle, history)
    except ProviderError as exc:
        raise ValueError(f"replay cannot settle {instrument.symbol} trades: {exc}") from exc
    check = validate_bars(frame, instrument, item.calendar, settle, min_bars=1, stale_bars=_NEVER_STALE)
    if check.bars is None:
        raise ValueError(f"replay cannot settle {instrument.symbol} trades: {check.rejection}")
    return MarketContext(instrument, check.bars, item.calendar)
