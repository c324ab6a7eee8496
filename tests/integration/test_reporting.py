"""The report figures of the running bot over a long closed book: computed away from the event loop, the same."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bot.bootstrap import open_runtime
from bot.config import load_settings
from bot.ops.clock import BotClock
from bot.services.book import TRADED_KINDS
from bot.services.reporting import Reporting
from bot.services.reports import Period, by_period, profit
from data.sqlite.codecs import _TRADE_COLUMNS, _encode_trade
from data.sqlite.queries import BULK_DECODE_ROWS
from engine.performance import summarize
from engine.trading import ExitReason, TradeKind
from tests.integration.test_bot_store import make_trade
from tests.support import require_market_dir

AT = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")  # USDJPY converts at its exit price, the others are dollars


async def test_the_reports_over_hundreds_of_closed_trades_are_the_figures_computed_directly(tmp_path: Path) -> None:
    settings = load_settings(
        {}, data_source=f"csv:{require_market_dir()}", db_path=tmp_path / "bot.db", TELEGRAM_ALLOWED_USERS="42"
    )
    async with open_runtime(settings, BotClock(AT)) as rt:
        count = BULK_DECODE_ROWS + 64
        for k in range(count):
            symbol = SYMBOLS[k % len(SYMBOLS)]
            entered = AT - timedelta(hours=2 * count - 2 * k)
            trade = make_trade(
                f"r{k}",
                TradeKind.EXTERNAL,
                symbol=symbol,
                strategy=("trend_pullback", "pattern_reversal")[k % 2],
                entry_time=entered,
            )
            exit_price = Decimal("100.80") if k % 3 else Decimal("99.40")
            await rt.store.record_external_trade(
                trade.closed(entered + timedelta(hours=1), exit_price, ExitReason.EXTERNAL)
            )
        # Paper trades are opened by an approval's fill; here they go straight into the bot's file, closed, before
        # the outside ones (the balance counts only the account's own trades).
        earlier = AT - timedelta(hours=2 * count + 100)
        paper = []
        for k in range(40):
            opened = earlier + timedelta(hours=2 * k)
            trade = make_trade(f"p{k}", symbol=SYMBOLS[k % len(SYMBOLS)], entry_time=opened)
            price = Decimal("100.60") if k % 2 else Decimal("99.50")
            paper.append(trade.closed(opened + timedelta(hours=1), price, ExitReason.TARGET))
        with contextlib.closing(sqlite3.connect(tmp_path / "bot.db")) as con, con:
            marks = ", ".join("?" * len(_TRADE_COLUMNS.split(",")))
            con.executemany(f"INSERT INTO trades ({_TRADE_COLUMNS}) VALUES ({marks})", map(_encode_trade, paper))
        reporting = Reporting(rt)
        closed = await rt.store.trades(TRADED_KINDS)
        money = rt.desk.account_pnl
        assert len(closed) == count + len(paper)

        seen = await reporting.overview()
        assert seen.closed == summarize(closed, money) and seen.closed.trades == count + len(paper)
        assert seen.by_strategy == {
            name: summarize([t for t in closed if t.strategy == name], money)
            for name in ("breakout", "pattern_reversal", "trend_pullback")
        }
        assert seen.shadow.trades == 0
        assert await reporting.profit() == profit(closed, money, {}, rt.desk.policy.equity, reporting.currency)
        today = rt.clock.now().date()
        assert await reporting.periods(Period.WEEK, 8) == by_period(closed, money, Period.WEEK, 8, today)
        newest = await reporting.trades(5)
        assert [t.signal_id for t, _ in newest] == [f"r{k}" for k in range(count - 1, count - 6, -1)]
        assert [pnl for _, pnl in newest] == [money(t).quantize(Decimal("0.01")) for t, _ in newest]
        [row] = await reporting.balance()
        mine = [t for t in closed if t.kind is TradeKind.PAPER]  # outside trades are not the account's money
        assert len(mine) == len(paper) and row.equity == rt.desk.policy.equity + sum(map(money, mine), Decimal(0))
        assert row.equity != rt.desk.policy.equity
