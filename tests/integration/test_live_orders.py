"""OANDA partial fills and rejections, through the running bot: the trade record says what really happened.

A partial fill opens a LIVE trade of the filled quantity only (OANDA's trade holds those units, with the
stop-loss and take-profit on them); a rejection fails the signal with OANDA's reason in plain words, sent
once and never retried, and opens nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.services.desk import OutcomeKind
from engine.domain import SignalStatus
from engine.trading import TradeKind
from tests.fakes.oanda_server import FakeOanda, Fault, Route
from tests.integration.live_support import TRADER, bot, chat_texts, oanda_settings, offered_signal


@pytest.fixture
async def oanda() -> AsyncIterator[FakeOanda]:
    async with FakeOanda() as fake:
        fake.set_price("GBP_USD", "1.35645", "1.35657")
        yield fake


async def test_a_partial_fill_records_a_live_trade_of_the_filled_quantity_only(
    tmp_path: Path, oanda: FakeOanda
) -> None:
    db = tmp_path / "bot.db"
    oanda.inject(Route.ORDERS, Fault.partial(10000))  # 0.10 lots of the size asked
    async with bot(oanda_settings(db, oanda)) as rt:
        signal_id = await offered_signal(rt)
        record = await rt.store.signal(signal_id)
        assert record is not None and record.quantity is not None
        asked = record.quantity
        assert asked > Decimal("0.10")

        outcome = await rt.desk.approve(signal_id, TRADER)

        assert outcome.kind is OutcomeKind.DONE
        assert outcome.message == f"Filled 0.1 of {asked} asked @ 1.35657."
        [trade] = await rt.store.open_trades()
        assert (trade.kind, trade.trade_id, trade.quantity) == (TradeKind.LIVE, signal_id, Decimal("0.1"))
        assert trade.risk_money == (trade.entry_price - trade.stop) * Decimal("0.1") * 100000  # risk of what filled
        fill = await rt.store.order_fill(signal_id)
        assert fill is not None and fill.quantity == Decimal("0.1")
        filled = await rt.store.signal(signal_id)
        assert filled is not None and filled.status is SignalStatus.FILLED
        assert any("filled 0.1 lots @ <code>1.35657</code>" in t for t in await chat_texts(rt))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT quantity, fill_quantity FROM orders").fetchall() == [(str(asked), "0.1")]
    [at_oanda] = oanda.open_trades
    assert at_oanda["currentUnits"] == "10000"  # the broker holds what the record says
    assert len(oanda.requests_for(Route.ORDERS)) == 1


async def test_the_chat_is_told_a_partial_fill_was_less_than_asked(tmp_path: Path, oanda: FakeOanda) -> None:
    oanda.inject(Route.ORDERS, Fault.partial(10000))
    async with bot(oanda_settings(tmp_path / "bot.db", oanda)) as rt:
        signal_id = await offered_signal(rt)
        record = await rt.store.signal(signal_id)
        assert record is not None
        await rt.desk.approve(signal_id, TRADER)
        assert any(f"of {record.quantity} asked" in t for t in await chat_texts(rt))


async def test_a_rejection_fails_the_signal_with_oanda_reason_and_opens_nothing(
    tmp_path: Path, oanda: FakeOanda
) -> None:
    oanda.inject(Route.ORDERS, Fault.reject("INSUFFICIENT_MARGIN"))
    async with bot(oanda_settings(tmp_path / "bot.db", oanda)) as rt:
        signal_id = await offered_signal(rt)

        outcome = await rt.desk.approve(signal_id, TRADER)

        assert outcome.kind is OutcomeKind.REFUSED
        assert outcome.message == "Order failed: OANDA rejected the order: insufficient margin"
        record = await rt.store.signal(signal_id)
        assert record is not None and record.status is SignalStatus.FAILED
        assert record.reason == "order refused: OANDA rejected the order: insufficient margin"
        assert await rt.store.open_trades() == []
        assert await rt.store.order_fill(signal_id) is None
        texts = await chat_texts(rt)
        assert any(
            f"GBPUSD order for {signal_id} failed: OANDA rejected the order: insufficient margin" in t for t in texts
        )
        assert await rt.monitor.check_live() == []
    assert len(oanda.requests_for(Route.ORDERS)) == 1  # a rejection is final: never retried
    assert oanda.open_trades == []


async def test_a_broker_error_echoing_the_token_leaves_no_secret_in_the_database_or_the_chat(
    tmp_path: Path, oanda: FakeOanda
) -> None:
    db = tmp_path / "bot.db"
    oanda.inject(Route.ORDERS, Fault.echo_credentials())
    async with bot(oanda_settings(db, oanda)) as rt:
        signal_id = await offered_signal(rt)
        outcome = await rt.desk.approve(signal_id, TRADER)
        assert outcome.kind is OutcomeKind.REFUSED
        record = await rt.store.signal(signal_id)
        assert record is not None and record.status is SignalStatus.FAILED
        assert record.reason == "order refused: OANDA rejected order " + signal_id + (
            ": Invalid request (Authorization: Bearer <redacted>)"
        )
        assert not [t for t in await chat_texts(rt) if oanda.token in t]
    dump = "\n".join(sqlite3.connect(db).iterdump())  # every row of every table, as SQL
    assert oanda.token not in dump and oanda.token not in db.read_bytes().decode("latin-1")
    assert "Bearer <redacted>" in dump
