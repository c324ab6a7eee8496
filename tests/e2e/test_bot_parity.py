"""The bot trades what the backtester trades: a replayed month of BTCUSDT, trade for trade.

The real bot's services (`open_runtime`, the composition root of `tradebot run`: the scan, the desk, the paper
broker, the position monitor and the SQLite store) run in auto mode on a bot clock the test steps from one
scheduled run to the next with the scheduler's own fire times, calling the bot's housekeeping tick before each
run as the job queue does. The gate validates the system first, in its worker process, on the data before the
month. The paper broker fills at the next bar's open with the backtest's costs (`[broker] paper_fill =
"next_open"`) and the runs happen at each bar's close (`delay_seconds = 0`).

The trades the bot records for the month's signals must equal the backtester's over the same month: signal, entry
bar and price, exit bar, price and reason, quantity, fees and P&L. Rules that exist only in the bot are switched
off here and named in the README: the protections (daily loss, losing streak, drawdown, trades per day,
cooldowns, correlation), the news embargo, the per-run signal cap, the signal TTL of manual approvals, and fills
later than the bar's close (a run delayed after the close, or an approval clicked later, fills at the open of
the bar after it).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.bootstrap import open_runtime
from bot.config import InstrumentConfig, load_settings
from bot.services.configure import backtest_config
from engine.backtest import backtest
from engine.bars import to_nanos
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.indicators import MarketContext
from engine.strategy import build_strategy
from engine.systems import ValidationStatus
from engine.trading import ExitReason, Trade, TradeKind
from tests.fakes.clock import SteppingClock
from tests.support import require_market_dir, shared_bars

pytestmark = pytest.mark.shared_data

MONTH = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
SETTLE = timedelta(days=3)  # the month's last trades close within max_hold_bars (48 hours) after it
LENIENT_GATE = {
    "min_oos_trades": 1,
    "min_profit_factor": 0,
    "min_expectancy_r": -100,
    "min_sharpe": -100,
    "max_drawdown": 1,
    "min_win_rate_ratio": 0,
}


def settings(db: Path) -> Any:
    btc = InstrumentConfig.from_instrument(default_instrument("BTCUSDT")).model_dump()
    return load_settings(
        {},
        db_path=db,
        data_source=f"csv:{require_market_dir()}",
        watchlist=[btc],
        strategies={"pattern_reversal": {"enabled": False}},
        bot={
            "mode": "auto",
            "symbol_cooldown_minutes": 0,
            "protections": {
                "max_trades_per_day": None,
                "daily_loss_fraction": None,
                "max_consecutive_losses": None,
                "max_drawdown_fraction": None,
                "symbol_cooldown_minutes": 0,
                "correlation_threshold": None,
            },
            "schedules": [{"name": "btc", "cron": "0 * * * *", "symbols": ["BTCUSDT"], "delay_seconds": 0}],
        },
        broker={"paper_fill": "next_open"},
        backtest={"gate": LENIENT_GATE},  # the gate passes it: only a validated system is executed automatically
        learning={"frozen": True},
        backup={"enabled": False},
        summary={"enabled": False},
        metrics={"enabled": False},
        TELEGRAM_ALLOWED_USERS="42",
    )


def row(t: Trade, index: dict[int, int]) -> tuple[object, ...]:
    """What a trader compares: entry and exit bar (by index), prices, reason, size, fees and P&L."""
    assert t.exit_time is not None
    entry_bar = index[to_nanos(t.entry_time)]
    exit_bar = index[to_nanos(t.exit_time) - 3_600_000_000_000]  # an exit is reported at its bar's close
    return (
        t.signal_id,
        t.side,
        entry_bar,
        t.entry_price,
        exit_bar,
        t.exit_price,
        t.exit_reason,
        t.quantity,
        t.fees,
        t.pnl,
    )


async def test_a_replayed_month_of_the_bot_records_the_backtesters_trades(tmp_path: Path) -> None:
    config = settings(tmp_path / "bot.db")
    clock = SteppingClock(MONTH[0])
    async with open_runtime(config, clock) as bot:  # type: ignore[arg-type]
        assert await bot.revalidate_if_due(clock.now(), starting=True)
        await bot.validation.wait()
        [validated] = bot.desk.systems.specs.values()
        assert bot.desk.systems.validation(validated.strategy, "BTCUSDT", clock.now()).status is (
            ValidationStatus.VALIDATED
        )
        [group] = bot.scheduler.groups
        fire = group.next_fire(clock.now())  # 01:00, the close of the month's first bar
        runs = 0
        while fire <= MONTH[1] + SETTLE:
            clock.at = fire
            await bot.tick()
            await bot.scheduled_run(group, bot.scheduler.open_symbols(group, fire))
            runs += 1
            fire = group.next_fire(fire)
        recorded = await bot.store.trades([TradeKind.PAPER])
        still_open = await bot.store.open_trades([TradeKind.PAPER])
        signals = {t.signal_id: await bot.store.signal(t.signal_id) for t in recorded}

    assert runs == 24 * 34  # every hour from 2025-03-01 01:00 to 2025-04-04 00:00
    bars = shared_bars("BTCUSDT", "1h")
    instrument = default_instrument("BTCUSDT")
    ctx = MarketContext(
        instrument, bars.head(int(np.searchsorted(bars.time, to_nanos(MONTH[1] + SETTLE)))), get_calendar("CRYPTO")
    )
    start, end = (int(np.searchsorted(ctx.bars.time, to_nanos(t))) for t in MONTH)
    result = backtest(
        ctx, build_strategy("trend_pullback"), config.engine_config(), backtest_config(config), start=start, end=end
    )
    index = {int(ns): k for k, ns in enumerate(ctx.bars.time)}

    in_month = [t for t in recorded if MONTH[0] <= signals[t.signal_id].scored.setup.bar_time < MONTH[1]]  # type: ignore[union-attr]
    assert (
        len(result.trades) >= 20 and result.open_trades == () and not [t for t in still_open if t.entry_time < MONTH[1]]
    )
    assert [row(t, index) for t in sorted(in_month, key=lambda t: t.entry_time)] == [
        row(bt.trade, index) for bt in result.trades
    ]
    assert sum((t.pnl or Decimal(0) for t in in_month), Decimal(0)) == sum(
        (bt.trade.pnl or Decimal(0) for bt in result.trades), Decimal(0)
    )
    # The month holds the cases that order matters in: a trade exiting on the bar that signals the next one (the
    # bar's exits come before its entries), and trades that end on a stop and on a target.
    ordered = sorted(result.trades, key=lambda bt: bt.entry_index)
    assert any(b.signal_index == a.exit_index for a, b in itertools.pairwise(ordered))
    assert {t.exit_reason for t in in_month} >= {ExitReason.STOP, ExitReason.TARGET}
