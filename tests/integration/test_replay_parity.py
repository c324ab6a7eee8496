"""Replay (the live scan, bar by bar) and the backtester agree signal for signal and trade for trade.

For every registered strategy, on real shared data: `bot.services.replay.replay` drives `ScanService.scan(as_of=each
bar's close)` over a CSV provider, exactly as the bot would run at that instant, and trades what it found;
`engine.backtest.backtest` computes the signals over the whole history at once. Both must produce the same
setups (ids, levels, reasons, quality scores with every component) and the same trades, field for field,
with costs, ATR slippage and a holding limit switched on so every path of the trade logic is exercised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from bot.services.replay import replay
from bot.services.scan import WatchItem
from data.market.csv_provider import CsvProvider
from engine.backtest import BacktestConfig, backtest, simulate
from engine.bars import from_nanos
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.costs import CostModel
from engine.domain import ScoredSetup
from engine.indicators import MarketContext
from engine.pipeline import EngineConfig
from engine.results import BacktestTrade
from engine.strategy import build_strategy, strategy_names
from tests.support import shared_bars

# (strategy, symbol, first bar replayed, end of the window): windows start after the strategy's warm-up and
# hold 1,500-1,800 bars, each with several signals; the file's history from its first bar is loaded.
CASES = [
    ("trend_pullback", "EURUSD", 1_000, 2_500),
    ("pattern_reversal", "AAPL", 1_000, 2_500),
    ("pattern_reversal", "GBPUSD", 1_000, 2_500),
    ("defining_order", "RELIANCE", 600, 2_400),
]
CONFIG = BacktestConfig(
    costs=CostModel(slippage_bps=Decimal("1"), commission_bps=Decimal("0.5"), commission_per_order=Decimal("1")),
    slippage_atr=0.02,
    max_hold_bars=36,
)


def test_every_registered_strategy_has_a_parity_case() -> None:
    assert {name for name, *_ in CASES} == set(strategy_names())


@pytest.mark.parametrize(("name", "symbol", "start", "end"), CASES)
async def test_replay_of_the_live_scan_matches_the_backtest(
    name: str, symbol: str, start: int, end: int, market_dir: Path
) -> None:
    instrument = default_instrument(symbol)
    calendar = get_calendar(instrument.calendar)
    strategy = build_strategy(name)
    bars = shared_bars(symbol, instrument.interval.value).head(end)
    ctx = MarketContext(instrument, bars, calendar)
    engine = EngineConfig()

    replayed = await replay(
        CsvProvider(market_dir),
        WatchItem(instrument, calendar, (strategy,)),
        engine,
        CONFIG,
        start=bars.bar_time(start),
        end=from_nanos(int(bars.close_time[end - 1])),
    )
    assert replayed.errors == ()
    assert replayed.scans == end - start
    assert np.array_equal(replayed.context.bars.time, bars.time)
    assert np.array_equal(replayed.context.bars.close, bars.close)

    # Signals: with overlapping positions allowed the backtest validates and scores every candidate.
    every = backtest(ctx, strategy, engine, replace(CONFIG, one_position_per_symbol=False), start=start, end=end)
    assert len(replayed.setups) >= 5, "the window should hold several signals"
    assert [s.setup.signal_id for s in replayed.setups] == [s.signal_id for s in every.setups]
    assert list(replayed.setups) == [ScoredSetup(s, every.scores[s.signal_id]) for s in every.setups]
    assert sum(count for _, count in replayed.rejections) == every.rejections

    # Trades, one position at a time (what the replay simulated) and overlapping.
    one = backtest(ctx, strategy, engine, CONFIG, start=start, end=end)
    assert len(one.trades) >= 3
    assert _fields(replayed.trades) == _fields(one.trades)
    assert replayed.trades == one.trades and replayed.open_trades == one.open_trades
    overlapping = simulate(
        replayed.context, replayed.setups, replace(CONFIG, one_position_per_symbol=False), rules=engine.rules
    )
    assert overlapping.trades == every.trades and overlapping.open_trades == every.open_trades


def _fields(trades: Sequence[BacktestTrade]) -> list[tuple[object, ...]]:
    """Every trade field, so a mismatch names the field and the trade."""
    rows = []
    for bt in trades:
        t = bt.trade
        rows.append(
            (
                t.signal_id,
                t.side,
                t.entry_time,
                t.entry_price,
                t.quantity,
                t.entry_fees,
                t.stop,
                t.target,
                t.exit_time,
                t.exit_price,
                t.exit_reason,
                t.exit_fees,
                bt.entry_index,
                bt.exit_index,
                bt.quality,
            )
        )
    return rows
