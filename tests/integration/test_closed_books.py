"""The protections' closed book, kept up to date from a real SQLite file: new closes are read, nothing else is."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import data.sqlite.connection as connection_module
from bot.services.book import ClosedBooks, fold_closed
from data.sqlite.codecs import _TRADE_COLUMNS, _encode_trade
from data.sqlite.migrations import MIGRATIONS
from data.sqlite.store import SqliteStore
from engine.domain import Side
from engine.trading import ExitReason, Trade, TradeKind

START = datetime(2025, 3, 3, tzinfo=UTC)
D0 = Decimal(0)


def trade(k: int, exit_hours: float, exit_price: str, kind: TradeKind = TradeKind.PAPER) -> Trade:
    exit_at = START + timedelta(hours=exit_hours)
    return Trade(
        trade_id=f"t{k:03d}",
        signal_id=f"t{k:03d}",
        kind=kind,
        strategy="trend_pullback",
        symbol="EURUSD" if k % 2 else "XAUUSD",
        side=Side.LONG,
        quantity=Decimal("0.10"),
        contract_size=Decimal(100000),
        entry_time=exit_at - timedelta(hours=1),
        entry_price=Decimal("1.08000"),
        stop=Decimal("1.07800"),
        target=Decimal("1.08400"),
        exit_time=exit_at,
        exit_price=Decimal(exit_price),
        exit_reason=ExitReason.MANUAL,
    )


def insert(db: Path, *trades: Trade) -> None:
    with closing(sqlite3.connect(db)) as con, con:
        marks = ", ".join("?" * len(_TRADE_COLUMNS.split(",")))
        con.executemany(f"INSERT INTO trades ({_TRADE_COLUMNS}) VALUES ({marks})", [_encode_trade(t) for t in trades])


class CountingStore:
    """The real store, counting the calls made to it (each one trip to the database's thread)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await method(*args, **kwargs)

        return call


async def test_a_fold_reads_the_store_once_whether_or_not_a_trade_closed(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "bot.db") as store:
        counting = CountingStore(store)
        books = ClosedBooks(counting)  # type: ignore[arg-type]
        insert(tmp_path / "bot.db", *(trade(k, 10 * k, "1.08100") for k in range(1, 4)))
        first = await books.fold("overall", Decimal(10000))
        assert await books.fold("overall", Decimal(10000)) is first  # nothing closed
        insert(tmp_path / "bot.db", trade(4, 40, "1.07900"))
        later = await books.fold("overall", Decimal(10000))
        assert [t.trade_id for t in later.trades] == ["t001", "t002", "t003", "t004"]
        assert counting.calls == Counter(closed_after=3) and books.reads == 4


async def test_folds_made_at_the_same_time_count_a_new_close_once(tmp_path: Path) -> None:
    # A click and a run's offers (or two clicks) fold at once: both read the close that happened meanwhile.
    async with await SqliteStore.open(tmp_path / "bot.db") as store:
        books = ClosedBooks(store)
        insert(tmp_path / "bot.db", *(trade(k, 10 * k, "1.08100") for k in range(1, 4)))
        await books.fold("overall", Decimal(10000))
        insert(tmp_path / "bot.db", trade(4, 40, "1.07900"))
        overall, account = await asyncio.gather(
            books.fold("overall", Decimal(10000)), books.fold("account", Decimal(5000))
        )
        expected = ["t001", "t002", "t003", "t004"]
        assert [t.trade_id for t in overall.trades] == expected and [t.trade_id for t in account.trades] == expected
        assert books.reads == 4


async def test_only_new_closes_are_read_and_the_fold_is_the_whole_books(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "bot.db")
    try:
        books = ClosedBooks(store)
        insert(tmp_path / "bot.db", *(trade(k, 10 * k, "1.08100" if k % 3 else "1.07900") for k in range(1, 40)))
        first = await books.fold("overall", Decimal(10000))
        assert books.reads == 39 and len(first.trades) == 39
        assert await books.fold("overall", Decimal(10000)) is first  # nothing closed: no read at all
        # A close reconciled late (its exit before the others'), one more, and a shadow trade that does not count.
        insert(tmp_path / "bot.db", trade(40, 5, "1.07850"), trade(41, 500, "1.08300"))
        insert(tmp_path / "bot.db", trade(42, 7, "1.07000", TradeKind.SHADOW))
        later = await books.fold("overall", Decimal(10000))
        assert books.reads == 41  # the two new ones only
        whole = fold_closed(await store.trades([TradeKind.PAPER, TradeKind.LIVE]), Decimal(10000))
        assert later.trades == whole.trades and [t.trade_id for t in later.trades][:2] == ["t040", "t001"]
        assert (later.equity, later.peak, later.last_gain, dict(later.account_pnl)) == (
            whole.equity,
            whole.peak,
            whole.last_gain,
            dict(whole.account_pnl),
        )
        # The usual close, after every other: appended to the fold, the same as folding the whole book again.
        insert(tmp_path / "bot.db", trade(43, 600, "1.07700"))
        appended = await books.fold("overall", Decimal(10000))
        again = fold_closed(await store.trades([TradeKind.PAPER, TradeKind.LIVE]), Decimal(10000))
        assert books.reads == 42 and appended.trades == again.trades and appended.trades[-1].trade_id == "t043"
        assert (appended.equity, appended.peak, appended.last_gain, appended.exits) == (
            again.equity,
            again.peak,
            again.last_gain,
            again.exits,
        )
        # Another key (an account's symbols, other money) folds from what was read: no read.
        gold = await books.fold("gold account", Decimal(5000), symbols=frozenset({"XAUUSD"}))
        assert books.reads == 42 and {t.symbol for t in gold.trades} == {"XAUUSD"}
        assert gold.equity == Decimal(5000) + sum((t.pnl or Decimal(0) for t in gold.trades), Decimal(0))
    finally:
        await store.close()


def close_numbers(db: Path) -> list[tuple[str, int | None]]:
    with closing(sqlite3.connect(db)) as con:
        return con.execute("SELECT trade_id, closed_seq FROM trades ORDER BY trade_id").fetchall()


async def test_closes_are_numbered_in_the_order_they_are_written_and_an_older_database_in_exit_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "bot.db"
    monkeypatch.setattr(connection_module, "MIGRATIONS", MIGRATIONS[:9])  # a database from before the numbers
    async with await SqliteStore.open(db) as old:
        assert old.schema_version == 9
    insert(db, trade(1, 30, "1.08100"), trade(2, 10, "1.07900"), trade(3, 20, "1.08200"))
    still_open = dataclasses.replace(trade(4, 40, "1.08000"), exit_time=None, exit_price=None, exit_reason=None)
    insert(db, still_open)
    monkeypatch.undo()
    async with await SqliteStore.open(db) as store:
        # Numbered by exit (t002 exited first); the open trade has none.
        assert close_numbers(db) == [("t001", 3), ("t002", 1), ("t003", 2), ("t004", None)]
        assert [seq for seq, _ in await store.closed_after(0)] == [1, 2, 3]
        books = ClosedBooks(store)
        first = await books.fold("overall", Decimal(10000))
        assert books.reads == 3 and [t.trade_id for t in first.trades] == ["t002", "t003", "t001"]
        # A close written now, then a trade inserted closed (reconciled late, an exit before every other): 4, 5.
        assert await store.close_trade("t004", START + timedelta(hours=41), Decimal("1.08300"), ExitReason.TARGET, D0)
        insert(db, trade(5, 1, "1.07700"))
        assert [(seq, t.trade_id) for seq, t in await store.closed_after(3)] == [(4, "t004"), (5, "t005")]
        assert await store.closed_after(5) == []
        later = await books.fold("overall", Decimal(10000))
        assert books.reads == 5  # the two new closes only
        whole = fold_closed(await store.trades([TradeKind.PAPER, TradeKind.LIVE]), Decimal(10000))
        assert later.trades == whole.trades and (later.equity, later.peak) == (whole.equity, whole.peak)
        # A shadow close is numbered too, but is not the paper and live book's.
        insert(db, trade(6, 50, "1.08000", TradeKind.SHADOW))
        assert [seq for seq, _ in await store.closed_after(5)] == [6]
        assert await store.closed_after(5, [TradeKind.PAPER, TradeKind.LIVE]) == []
        assert await books.fold("overall", Decimal(10000)) is later


async def test_a_moved_conversion_price_converts_again_only_the_trades_that_read_it(tmp_path: Path) -> None:
    # XAUUSD trades are converted at a price that moves; EURUSD ones read none (an account in dollars).
    prices = {"XAUUSD": Decimal(2)}

    def to_account(t: Trade) -> Decimal:
        return (t.pnl or D0) * prices.get(t.symbol, Decimal(1))

    def rates(symbol: str) -> object:
        return prices.get(symbol)

    store = await SqliteStore.open(tmp_path / "bot.db")
    try:
        books = ClosedBooks(store)
        insert(tmp_path / "bot.db", *(trade(k, 10 * k, "1.08100" if k % 3 else "1.07900") for k in range(1, 41)))
        first = await books.fold("overall", Decimal(10000), to_account, rates=rates)
        assert books.conversions == 40
        assert await books.fold("overall", Decimal(10000), to_account, rates=rates) is first  # nothing moved
        assert books.conversions == 40
        prices["XAUUSD"] = Decimal(3)  # the rate book's next price: the 20 gold trades only, nothing read
        moved = await books.fold("overall", Decimal(10000), to_account, rates=rates)
        assert books.conversions == 60 and books.reads == 40
        whole = fold_closed(await store.trades([TradeKind.PAPER, TradeKind.LIVE]), Decimal(10000), to_account)
        assert (moved.equity, moved.peak, moved.last_gain, moved.carried, dict(moved.account_pnl)) == (
            whole.equity,
            whole.peak,
            whole.last_gain,
            whole.carried,
            dict(whole.account_pnl),
        )
        assert moved.equity != first.equity
        # A move and a close at once: the gold trades again, and the new close.
        prices["XAUUSD"] = Decimal("2.5")
        insert(tmp_path / "bot.db", trade(41, 500, "1.08300"))
        both = await books.fold("overall", Decimal(10000), to_account, rates=rates)
        whole = fold_closed(await store.trades([TradeKind.PAPER, TradeKind.LIVE]), Decimal(10000), to_account)
        assert books.conversions == 81 and books.reads == 41
        assert (both.equity, both.peak, both.carried) == (whole.equity, whole.peak, whole.carried)
    finally:
        await store.close()
