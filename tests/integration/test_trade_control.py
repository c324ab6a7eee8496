"""Closing a position and moving its stop from Telegram's services: exactly once, owner-only, only on what was shown.

Paper positions: the desk harness (real SQLite, the real paper broker with a pinned quote, real market data).
Live positions: the running bot against the fake OANDA server (real HTTP, OANDA's documented answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.services.desk import OutcomeKind
from bot.services.trade_control import OWNER_ONLY, TradeControl
from engine.domain import Interval, Side
from engine.exits import find_exit_with_stops
from engine.trading import ExitReason, Trade, TradeKind
from tests.builders import make_bars
from tests.fakes.oanda_server import CloseReason, FakeOanda, Fault, Route
from tests.integration.live_support import approved_signal, bot, chat_texts, oanda_settings
from tests.integration.test_desk import TRADER, Desk, build

STRANGER = 7


@pytest.fixture
async def d(tmp_path: Path) -> AsyncIterator[Desk]:
    async for built in build(tmp_path):
        yield built


def control(d: Desk, owner: int = TRADER) -> TradeControl:
    return TradeControl(d.store, {TradeKind.PAPER: d.broker}, d.desk.notifier, d.clock, d.desk.instruments, owner)


async def open_both(d: Desk) -> tuple[Trade, Trade]:
    """Approve the run's GBPUSD and XAUUSD signals; their open paper trades."""
    for signal_id in await d.offer():
        assert (await d.desk.approve(signal_id, TRADER)).kind is OutcomeKind.DONE
    gbp, gold = sorted(await d.store.open_trades(), key=lambda t: t.symbol)
    return gbp, gold


async def test_a_position_closes_once_at_the_quote_with_costs(d: Desk) -> None:
    gbp, _ = await open_both(d)
    d.broker.prices["GBPUSD"] = D("1.35800")
    outcome = await control(d).close(gbp.trade_id, TRADER)
    assert outcome.kind is OutcomeKind.DONE
    # A long sells at the bid less 1 bp of slippage (1.35800 - 0.0001358 = 1.35786 on the tick), 1 bp commission.
    assert outcome.message == f"Closed GBPUSD {gbp.trade_id} @ 1.35786."
    [closed] = [t for t in await d.store.trades([TradeKind.PAPER]) if t.trade_id == gbp.trade_id]
    assert (closed.exit_price, closed.exit_reason) == (D("1.35786"), ExitReason.MANUAL)
    assert closed.exit_fees == (D("1.35786") * closed.quantity * 100000 * D("0.0001")).quantize(D("0.01"))
    again = await control(d).close(gbp.trade_id, TRADER)
    assert again.kind is OutcomeKind.INVALID and again.message == f"No open position {gbp.trade_id}."
    assert d.broker.closes == [gbp.trade_id]


async def test_twenty_presses_while_the_close_hangs_close_once(d: Desk) -> None:
    gbp, _ = await open_both(d)
    d.broker.order_gate = asyncio.Event()
    presses = [asyncio.create_task(control(d).close(gbp.trade_id, TRADER)) for _ in range(20)]
    while not d.broker.closes:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    d.broker.order_gate.set()
    outcomes = await asyncio.gather(*presses)
    assert [o.kind for o in outcomes].count(OutcomeKind.DONE) == 1
    assert {o.message for o in outcomes if o.kind is not OutcomeKind.DONE} == {
        f"Position {gbp.trade_id} is closed or already being changed."
    }
    assert d.broker.closes == [gbp.trade_id]  # one request reached the broker


async def test_only_the_owner_acts_on_positions(d: Desk) -> None:
    gbp, _ = await open_both(d)
    hands = control(d)
    for act in (hands.close, hands.breakeven):
        outcome = await act(gbp.trade_id, STRANGER)
        assert (outcome.kind, outcome.message) == (OutcomeKind.REFUSED, OWNER_ONLY)
    offer = await hands.offer_close_all(TRADER)
    assert offer is not None
    assert (await hands.close_batch(offer.batch_id, STRANGER)).message == OWNER_ONLY
    assert len(await d.store.open_trades()) == 2 and d.broker.closes == [] and d.broker.stop_moves == []


async def test_a_failed_close_leaves_the_position_open_and_free_to_close_again(d: Desk) -> None:
    gbp, _ = await open_both(d)
    d.broker.fail_with = "the market is closed"
    refused = await control(d).close(gbp.trade_id, TRADER)
    assert refused.kind is OutcomeKind.REFUSED and "not closed: the market is closed" in refused.message
    assert await d.store.open_trade(gbp.trade_id) is not None
    d.broker.fail_with = None
    assert (await control(d).close(gbp.trade_id, TRADER)).kind is OutcomeKind.DONE


async def test_close_all_closes_what_it_listed_and_only_once(d: Desk) -> None:
    gbp, gold = await open_both(d)
    hands = control(d)
    offer = await hands.offer_close_all(TRADER)
    assert offer is not None and [t.trade_id for t in offer.trades] == [t.trade_id for t in await d.store.open_trades()]
    # A position closed by hand after the confirmation was sent is reported, not closed twice.
    assert (await hands.close(gbp.trade_id, TRADER)).kind is OutcomeKind.DONE
    outcome = await hands.close_batch(offer.batch_id, TRADER)
    assert outcome.kind is OutcomeKind.DONE
    assert outcome.message == f"Closed 1 of 2 listed positions.\n  No open position {gbp.trade_id}."
    assert await d.store.open_trades() == []
    assert d.broker.closes == [gbp.trade_id, gold.trade_id]
    used = await hands.close_batch(offer.batch_id, TRADER)
    assert (used.kind, used.message) == (OutcomeKind.INVALID, "This button is no longer valid.")


async def test_a_close_all_confirmation_leaves_positions_opened_after_it(d: Desk) -> None:
    signals = await d.offer()
    assert (await d.desk.approve(signals[0], TRADER)).kind is OutcomeKind.DONE
    hands = control(d)
    offer = await hands.offer_close_all(TRADER)
    assert offer is not None and len(offer.trades) == 1
    assert (await d.desk.approve(signals[1], TRADER)).kind is OutcomeKind.DONE  # opened after the confirmation
    outcome = await hands.close_batch(offer.batch_id, TRADER)
    assert outcome.message == "Closed 1 of 1 listed position."
    [still] = await d.store.open_trades()
    assert still.trade_id == signals[1]


async def test_breakeven_moves_the_stop_once_and_only_beyond_the_entry(d: Desk) -> None:
    gbp, _ = await open_both(d)
    hands = control(d)
    d.broker.prices["GBPUSD"] = gbp.entry_price  # not beyond the entry: a stop there would close it at once
    at_entry = await hands.breakeven(gbp.trade_id, TRADER)
    assert at_entry.kind is OutcomeKind.REFUSED
    assert at_entry.message == (
        f"GBPUSD is at {gbp.entry_price}, not beyond the entry {gbp.entry_price}: a stop there would close it at "
        f"once (/close {gbp.trade_id} closes it now)."
    )
    d.broker.prices["GBPUSD"] = D("1.36000")
    moved = await hands.breakeven(gbp.trade_id, TRADER)
    assert (moved.kind, moved.message) == (OutcomeKind.DONE, f"Stop of GBPUSD moved to breakeven {gbp.entry_price}.")
    now = await d.store.open_trade(gbp.trade_id)
    assert now is not None and now.stop == gbp.stop  # the stop it entered with: its R is measured from it
    assert await hands.current_stop(now) == gbp.entry_price
    assert d.broker.stop_moves == [(gbp.trade_id, gbp.entry_price)]
    [move] = (await d.store.stop_moves([gbp.trade_id]))[gbp.trade_id]
    assert (move.old, move.new) == (gbp.stop, gbp.entry_price)
    again = await hands.breakeven(gbp.trade_id, TRADER)
    assert again.kind is OutcomeKind.INVALID and "already at" in again.message
    assert any(f"stop moved <code>{gbp.stop}</code> → <code>{gbp.entry_price}</code>" in t for t in await texts(d))


async def texts(d: Desk) -> list[str]:
    items = await d.store.due_messages(d.clock.now() + timedelta(days=1), limit=500)
    return [str(i.payload.get("text", "")) for i in items]


def test_a_moved_stop_watches_only_the_bars_after_it() -> None:
    # A long from 1.1000, stop 1.0950, target 1.1100. Bar 1 dips to 1.0990; the stop is moved to 1.1000 during
    # bar 2 (13:30); bar 3 dips to 1.0995. Only bar 3 may take the new stop: bar 1 was watched with the old one,
    # and so was bar 2, in progress at the move.
    start = datetime(2025, 6, 12, 10, tzinfo=UTC)
    bars = make_bars(
        [1.1010, 1.1020, 1.1030, 1.1000],
        low=[1.1005, 1.0990, 1.1001, 1.0995],
        high=[1.1012, 1.1025, 1.1040, 1.1031],
        start=start,
        interval=Interval.H1,
    )
    moved = [(None, 1.0950), (start + timedelta(hours=2, minutes=30), 1.1000)]
    event = find_exit_with_stops(bars, 0, Side.LONG, moved, 1.1100, max_bars=48)
    assert event is not None and (event.bar_index, event.price, event.reason) == (3, 1.1000, ExitReason.STOP)
    # Unmoved, the same bars never reach 1.0950: still open. The hold counts from the entry across the move.
    assert find_exit_with_stops(bars, 0, Side.LONG, [(None, 1.0950)], 1.1100, max_bars=48) is None
    timed = find_exit_with_stops(bars, 0, Side.LONG, [(None, 1.0950), (moved[1][0], 1.0900)], 1.1100, max_bars=3)
    assert timed is not None and (timed.bar_index, timed.reason) == (2, ExitReason.TIME)
    with pytest.raises(ValueError, match="first stop"):
        find_exit_with_stops(bars, 0, Side.LONG, [(start, 1.0950)], 1.1100)


@pytest.fixture
async def oanda() -> AsyncIterator[FakeOanda]:
    async with FakeOanda() as fake:
        fake.set_price("GBP_USD", "1.35645", "1.35657")
        yield fake


async def test_a_live_position_closes_at_oanda_and_records_its_fill(tmp_path: Path, oanda: FakeOanda) -> None:
    async with bot(oanda_settings(tmp_path / "bot.db", oanda)) as rt:
        signal_id = await approved_signal(rt)
        oanda.set_price("GBP_USD", "1.35800", "1.35812")
        outcome = await rt.control.close(signal_id, TRADER)
        assert (outcome.kind, outcome.message) == (OutcomeKind.DONE, f"Closed GBPUSD {signal_id} @ 1.35800.")
        [closed] = await rt.store.trades([TradeKind.LIVE])
        assert (closed.exit_price, closed.exit_reason) == (D("1.35800"), ExitReason.MANUAL)
        assert any("closed (manual) @ <code>1.35800</code>" in t for t in await chat_texts(rt))
        assert (await rt.control.close(signal_id, TRADER)).kind is OutcomeKind.INVALID
    [request] = oanda.requests_for(Route.TRADE_CLOSE)
    assert request.path.endswith(f"/trades/@{signal_id}/close") and request.body == {"units": "ALL"}
    assert [t["state"] for t in oanda.trades] == ["CLOSED"]


async def test_a_close_answered_503_after_it_happened_is_not_sent_twice(tmp_path: Path, oanda: FakeOanda) -> None:
    oanda.inject(Route.TRADE_CLOSE, Fault.accept_then_fail())
    async with bot(oanda_settings(tmp_path / "bot.db", oanda, retry_attempts=3)) as rt:
        signal_id = await approved_signal(rt)
        outcome = await rt.control.close(signal_id, TRADER)
        assert outcome.kind is OutcomeKind.DONE, outcome.message
        [closed] = await rt.store.trades([TradeKind.LIVE])
        assert closed.exit_price == D("1.35645")  # the close that happened, read back from OANDA's trade
    fills = [r for r in oanda.requests_for(Route.TRADE_CLOSE) if r.status == 200]
    assert len(fills) == 0 and len([t for t in oanda.trades if t["state"] == "CLOSED"]) == 1
    assert len(oanda.requests_for(Route.TRADE_CLOSE)) == 2  # the first took effect; the retry found it closed


async def test_a_live_position_its_stop_closed_first_is_recorded_as_stopped(tmp_path: Path, oanda: FakeOanda) -> None:
    async with bot(oanda_settings(tmp_path / "bot.db", oanda)) as rt:
        signal_id = await approved_signal(rt)
        oanda.close_trade(signal_id, "1.35347", CloseReason.STOP_LOSS)
        outcome = await rt.control.close(signal_id, TRADER)
        assert outcome.kind is OutcomeKind.DONE
        assert outcome.message == f"Closed GBPUSD {signal_id} @ 1.35347 (stop at the broker before this close)."
        [closed] = await rt.store.trades([TradeKind.LIVE])
        assert (closed.exit_price, closed.exit_reason) == (D("1.35347"), ExitReason.STOP)


async def test_a_halted_market_leaves_the_live_position_open(tmp_path: Path, oanda: FakeOanda) -> None:
    async with bot(oanda_settings(tmp_path / "bot.db", oanda)) as rt:
        signal_id = await approved_signal(rt)
        oanda.set_price("GBP_USD", "1.35645", "1.35657", tradeable=False)
        outcome = await rt.control.close(signal_id, TRADER)
        assert outcome.kind is OutcomeKind.REFUSED
        assert outcome.message == (
            f"GBPUSD {signal_id} not closed: OANDA did not close the trade of order {signal_id}: "
            "the market is halted (closed)."
        )
        assert await rt.store.open_trade(signal_id) is not None
        oanda.set_price("GBP_USD", "1.35645", "1.35657")
        assert (await rt.control.close(signal_id, TRADER)).kind is OutcomeKind.DONE  # free to close again


async def test_breakeven_replaces_the_stop_loss_at_oanda(tmp_path: Path, oanda: FakeOanda) -> None:
    async with bot(oanda_settings(tmp_path / "bot.db", oanda)) as rt:
        signal_id = await approved_signal(rt)
        oanda.set_price("GBP_USD", "1.35900", "1.35912")
        outcome = await rt.control.breakeven(signal_id, TRADER)
        assert (outcome.kind, outcome.message) == (OutcomeKind.DONE, "Stop of GBPUSD moved to breakeven 1.35657.")
        [live] = await rt.store.open_trades()
        assert await rt.control.current_stop(live) == D("1.35657")
    [request] = oanda.requests_for(Route.TRADE_ORDERS)
    assert request.body == {"stopLoss": {"price": "1.35657", "timeInForce": "GTC"}}
    [trade] = oanda.open_trades
    assert trade["stopLossOrder"]["price"] == "1.35657" and trade["stopLossOrder"]["state"] == "PENDING"
