"""SqliteStore as the bot's BotStore against a real SQLite file: lifecycle CAS, orders, fills, trades, outbox, state."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import data.sqlite.connection as connection_module
import data.sqlite.trades as trades_module
from data.outbox import OutboxKind
from data.sqlite.migrations import LATEST_VERSION, MIGRATIONS
from data.sqlite.queries import BULK_DECODE_ROWS
from data.sqlite.store import DuplicateTradeError, SqliteStore, StoreError, UnknownRecordError
from engine.domain import SIGNAL_TRANSITIONS, Side, SignalStatus
from engine.ports import BotStore, SignalRecord
from engine.trading import ExitReason, Fill, OrderRequest, Trade, TradeKind
from tests.integration.test_store import make_setup, plain, scalar, schema, scored

T0 = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)
S = SignalStatus
_SYMBOLS = (f"SYM{i}" for i in itertools.count())


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    async with await SqliteStore.open(db_path) as opened:
        yield opened


async def new_signal(store: SqliteStore, symbol: str | None = None, minute: int = 0) -> str:
    """Store one NEW long signal (entry 100.00, stop 99.00, target 103.00) through a finished run."""
    setup = make_setup(
        symbol or next(_SYMBOLS),
        entry="100.00",
        stop="99.00",
        targets=("103.00",),
        bar_time=T0 + timedelta(minutes=minute),
    )
    run_id = await store.start_run(T0, T0, "yahoo", [setup.symbol])
    await store.finish_run(run_id, T0 + timedelta(seconds=minute), [scored(setup)], [], [])
    return setup.signal_id


async def signal_in(store: SqliteStore, status: SignalStatus, symbol: str | None = None) -> str:
    """A stored signal moved along the happy path to `status` (PENDING, APPROVED or REJECTED...)."""
    signal_id = await new_signal(store, symbol)
    paths = {
        S.NEW: [],
        S.PENDING: [(S.NEW, S.PENDING)],
        S.APPROVED: [(S.NEW, S.PENDING), (S.PENDING, S.APPROVED)],
        S.REJECTED: [(S.NEW, S.PENDING), (S.PENDING, S.REJECTED)],
    }
    for expected, to in paths[status]:
        assert await store.transition(signal_id, expected, to, T0)
    return signal_id


async def status_of(store: SqliteStore, signal_id: str) -> SignalStatus:
    record = await store.signal(signal_id)
    assert record is not None
    return record.status


def make_trade(signal_id: str, kind: TradeKind = TradeKind.PAPER, **changes: Any) -> Trade:
    fields: dict[str, Any] = {
        "trade_id": f"{signal_id}-{kind}",
        "signal_id": signal_id,
        "kind": kind,
        "strategy": "breakout",
        "symbol": "EURUSD",
        "side": Side.LONG,
        "quantity": Decimal("2.50"),
        "contract_size": Decimal("1"),
        "entry_time": T0,
        "entry_price": Decimal("100.00"),
        "stop": Decimal("99.00"),
        "target": Decimal("103.00"),
        "entry_fees": Decimal("0.125"),
    }
    fields.update(changes)
    return Trade(**fields)


def make_fill(signal_id: str, symbol: str, **changes: Any) -> Fill:
    fields: dict[str, Any] = {
        "client_order_id": signal_id,
        "symbol": symbol,
        "side": Side.LONG,
        "quantity": Decimal("2.50"),
        "price": Decimal("100.02"),
        "fees": Decimal("0.125"),
        "filled_at": T0 + timedelta(seconds=2, microseconds=5),
    }
    fields.update(changes)
    return Fill(**fields)


async def approved_with_order(store: SqliteStore) -> tuple[str, str]:
    symbol = next(_SYMBOLS)
    signal_id = await signal_in(store, S.APPROVED, symbol)
    assert await store.submit_order(signal_id, OrderRequest(signal_id, symbol, Side.LONG, Decimal("2.50")), T0)
    return signal_id, symbol


def fill_trade(fill: Fill) -> Trade:
    return make_trade(
        fill.client_order_id,
        symbol=fill.symbol,
        quantity=fill.quantity,
        entry_time=fill.filled_at,
        entry_price=fill.price,
        entry_fees=fill.fees,
        approver_id=42,
        approval_latency_s=3.25,
    )


# --- migration ----------------------------------------------------------------------------------------------


async def test_a_version_1_database_is_migrated_keeping_its_data(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_module, "MIGRATIONS", MIGRATIONS[:1])
    async with await SqliteStore.open(db_path) as old:
        assert old.schema_version == 1
        signal_id = await new_signal(old, "EURUSD")
        legacy_id = await new_signal(old, "GBPUSD")
        runs = await old.recent_runs()
    with plain(db_path) as conn:  # a status the first release declared
        conn.execute("UPDATE signals SET status = 'pending_approval' WHERE signal_id = ?", (legacy_id,))
    monkeypatch.undo()

    async with await SqliteStore.open(db_path) as store:
        assert store.schema_version == LATEST_VERSION == 10
        assert await store.recent_runs() == runs
        [(setup, status)] = await store.setups_for_run(runs[-1].run_id)
        assert (setup.setup.signal_id, status) == (signal_id, S.NEW)
        record = await store.signal(signal_id)
        assert record is not None and record.status is S.NEW and record.run_id == runs[-1].run_id
        assert (record.quantity, record.offered_at, record.decided_by, record.reason) == (None, None, None, None)
        assert await status_of(store, legacy_id) is S.PENDING
        assert await store.transition(signal_id, S.NEW, S.PENDING, T0)
    names = {name for _, name, _ in schema(db_path)}
    assert {"signal_messages", "outbox", "orders", "trades", "bot_state", "trades_open"} <= names
    assert scalar(db_path, "PRAGMA integrity_check") == "ok"


# --- signal lifecycle -----------------------------------------------------------------------------------------


async def test_transitions_record_offer_and_decision(store: SqliteStore) -> None:
    port: BotStore = store  # type-checked conformance to the engine's port
    signal_id = await new_signal(store, "EURUSD")
    offered, decided = T0 + timedelta(seconds=30), T0 + timedelta(seconds=95, microseconds=250)

    assert await port.transition(
        signal_id, S.NEW, S.PENDING, offered, quantity=Decimal("0.050"), expires_at=offered + timedelta(minutes=15)
    )
    assert await port.transition(signal_id, S.PENDING, S.APPROVED, decided, by=42, reason="looks good")
    assert await port.transition(signal_id, S.APPROVED, S.FAILED, decided + timedelta(seconds=1), reason="no quote")

    record = await port.signal(signal_id)
    assert isinstance(record, SignalRecord)
    assert record.signal_id == signal_id and record.status is S.FAILED
    assert str(record.quantity) == "0.050"
    assert record.offered_at == offered and record.expires_at == offered + timedelta(minutes=15)
    assert (record.decided_by, record.decided_at, record.reason) == (42, decided, "no quote")
    assert record.decided_at is not None and record.decided_at.tzinfo is UTC
    assert await port.signal("0000000000") is None


async def test_a_move_from_the_wrong_status_changes_nothing(store: SqliteStore) -> None:
    signal_id = await signal_in(store, S.REJECTED)
    before = await store.signal(signal_id)

    assert not await store.transition(signal_id, S.PENDING, S.APPROVED, T0, by=7)
    assert not await store.transition(signal_id, S.NEW, S.PENDING, T0, quantity=Decimal(1))
    assert not await store.transition("ffffffffff", S.NEW, S.PENDING, T0)
    assert await store.signal(signal_id) == before


@pytest.mark.parametrize(
    ("expected", "to", "message"),
    [
        (S.PENDING, S.FILLED, "illegal signal transition pending -> filled"),
        (S.FILLED, S.PENDING, "illegal signal transition filled -> pending.*nothing"),
        (S.NEW, S.REJECTED, "illegal signal transition new -> rejected"),
        (S.APPROVED, S.ORDER_SUBMITTED, r"approved -> order_submitted is made by submit_order\(\)"),
        (S.ORDER_SUBMITTED, S.FILLED, r"order_submitted -> filled is made by record_fill\(\)"),
    ],
)
async def test_illegal_transitions_raise_naming_both_states(
    store: SqliteStore, expected: SignalStatus, to: SignalStatus, message: str
) -> None:
    signal_id = await new_signal(store)
    with pytest.raises(ValueError, match=message):
        await store.transition(signal_id, expected, to, T0)
    assert await status_of(store, signal_id) is S.NEW


async def test_every_legal_status_only_move_is_accepted(store: SqliteStore, db_path: Path) -> None:
    for expected, targets in SIGNAL_TRANSITIONS.items():
        for to in targets - {S.ORDER_SUBMITTED, S.FILLED}:
            signal_id = await new_signal(store)
            with plain(db_path) as conn:
                conn.execute("UPDATE signals SET status = ? WHERE signal_id = ?", (expected.value, signal_id))
            assert await store.transition(signal_id, expected, to, T0), (expected, to)
            assert await status_of(store, signal_id) is to


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"at": datetime(2025, 6, 12, 9, 40)}, ValueError, "at must be a timezone-aware UTC"),
        ({"quantity": Decimal(0)}, ValueError, "quantity must be positive"),
        ({"quantity": Decimal("NaN")}, ValueError, "quantity must be a finite Decimal"),
        ({"expires_at": datetime(2025, 6, 12, 9, 40)}, ValueError, "expires_at must be a timezone-aware UTC"),
        ({"by": True}, TypeError, "by must be an integer"),
        ({"to": "bogus"}, ValueError, "to must be one of"),
    ],
)
async def test_bad_transition_arguments_are_refused(
    store: SqliteStore, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    signal_id = await new_signal(store)
    call: dict[str, Any] = {"expected": S.NEW, "to": S.PENDING, "at": T0, **kwargs}
    with pytest.raises(error, match=message):
        await store.transition(signal_id, **call)
    assert await status_of(store, signal_id) is S.NEW


async def test_signals_with_status_are_oldest_first_and_filter_on_expiry(store: SqliteStore) -> None:
    ids = [await new_signal(store, minute=m) for m in range(4)]
    expiries = [
        T0 + timedelta(minutes=10),
        T0 + timedelta(minutes=10, microseconds=500_000),  # same second, later
        T0 + timedelta(minutes=5),
        None,
    ]
    for signal_id, expires_at in zip(ids, expiries, strict=True):
        assert await store.transition(signal_id, S.NEW, S.PENDING, T0, expires_at=expires_at)
    assert await store.transition(await new_signal(store), S.NEW, S.DROPPED, T0, reason="cooldown")

    pending = await store.signals_with_status(S.PENDING)
    assert [r.signal_id for r in pending] == ids
    by = T0 + timedelta(minutes=10, microseconds=250_000)
    assert [r.signal_id for r in await store.signals_with_status(S.PENDING, expiring_by=by)] == [ids[0], ids[2]]
    assert [r.signal_id for r in await store.signals_with_status(S.PENDING, T0 + timedelta(hours=1))] == ids[:3]
    assert [r.reason for r in await store.signals_with_status(S.DROPPED)] == ["cooldown"]
    assert await store.signals_with_status(S.FILLED) == []


async def test_last_offered_at_is_the_latest_offer_of_the_symbol(store: SqliteStore) -> None:
    first, second, dropped, other = [await new_signal(store, s, minute=m) for m, s in enumerate("AABC")]
    assert await store.last_offered_at("A") is None

    assert await store.transition(second, S.NEW, S.APPROVED, T0 + timedelta(minutes=3))  # auto-executed
    assert await store.transition(first, S.NEW, S.PENDING, T0 + timedelta(minutes=3, microseconds=1))
    assert await store.transition(dropped, S.NEW, S.DROPPED, T0 + timedelta(hours=1))  # never offered
    assert await store.transition(other, S.NEW, S.PENDING, T0 + timedelta(hours=2))

    assert await store.last_offered_at("A") == T0 + timedelta(minutes=3, microseconds=1)
    assert await store.last_offered_at("B") is None
    assert await store.last_offered_at("C") == T0 + timedelta(hours=2)


async def test_setups_for_run_report_the_current_lifecycle_status(store: SqliteStore) -> None:
    setup = scored(make_setup("XAUUSD", entry="2330.10", stop="2325.00", targets=("2340.00",)))
    run_id = await store.start_run(T0, T0, "yahoo", ["XAUUSD"])
    await store.finish_run(run_id, T0, [setup], [], [])
    assert await store.transition(setup.setup.signal_id, S.NEW, S.PENDING, T0)
    assert await store.setups_for_run(run_id) == [(setup, S.PENDING)]


# --- races ---------------------------------------------------------------------------------------------------


async def test_many_tasks_racing_on_one_signal_have_exactly_one_winner(store: SqliteStore) -> None:
    signal_id = await signal_in(store, S.PENDING)
    moves = [S.APPROVED, S.REJECTED, S.EXPIRED] * 20
    outcomes = await asyncio.gather(
        *(store.transition(signal_id, S.PENDING, to, T0, by=i) for i, to in enumerate(moves))
    )
    assert outcomes.count(True) == 1
    winner = outcomes.index(True)
    record = await store.signal(signal_id)
    assert record is not None and (record.status, record.decided_by) == (moves[winner], winner)


async def test_two_connections_racing_on_the_same_signals_have_exactly_one_winner_each(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as a, await SqliteStore.open(db_path) as b:
        ids = [await signal_in(a, S.PENDING) for _ in range(15)]
        with plain(db_path) as blocker:  # both must wait for this writer instead of failing with "locked"
            blocker.execute("BEGIN IMMEDIATE")
            racing = asyncio.gather(
                *(
                    store.transition(signal_id, S.PENDING, to, T0, by=n)
                    for signal_id in ids
                    for n, (store, to) in enumerate(itertools.product((a, b), (S.APPROVED, S.REJECTED)))
                )
            )
            await asyncio.sleep(0.3)
            blocker.execute("COMMIT")
            outcomes = await asyncio.wait_for(racing, timeout=10)
        for i, signal_id in enumerate(ids):
            assert outcomes[i * 4 : i * 4 + 4].count(True) == 1, signal_id
            assert await status_of(a, signal_id) in {S.APPROVED, S.REJECTED}


async def test_two_connections_submitting_the_same_order_place_it_once(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as a, await SqliteStore.open(db_path) as b:
        symbols = [f"EURUSD{i}" for i in range(10)]
        ids = [await signal_in(a, S.APPROVED, symbol) for symbol in symbols]
        outcomes = await asyncio.gather(
            *(
                store.submit_order(signal_id, OrderRequest(signal_id, symbol, Side.LONG, Decimal(1)), T0)
                for signal_id, symbol in zip(ids, symbols, strict=True)
                for store in (a, b, a, b)
            )
        )
    for i in range(len(ids)):
        assert outcomes[i * 4 : i * 4 + 4].count(True) == 1
    assert scalar(db_path, "SELECT count(*) FROM orders") == len(ids)
    assert scalar(db_path, "SELECT count(*) FROM signals WHERE status = 'order_submitted'") == len(ids)


# --- orders and fills --------------------------------------------------------------------------------------


async def test_submit_order_moves_the_signal_and_records_the_order_once(store: SqliteStore, db_path: Path) -> None:
    signal_id = await signal_in(store, S.APPROVED, "EURUSD")
    request = OrderRequest(signal_id, "EURUSD", Side.LONG, Decimal("0.50"))

    assert await store.submit_order(signal_id, request, T0 + timedelta(seconds=1))
    assert not await store.submit_order(signal_id, request, T0 + timedelta(seconds=2))

    assert await status_of(store, signal_id) is S.ORDER_SUBMITTED
    with plain(db_path) as conn:
        rows = conn.execute("SELECT client_order_id, symbol, side, quantity, submitted_at, filled_at FROM orders")
        assert rows.fetchall() == [(signal_id, "EURUSD", "long", "0.50", "2025-06-12T09:40:01Z", None)]
    assert await store.order_fill(signal_id) is None


async def test_submit_order_for_a_signal_not_approved_writes_nothing(store: SqliteStore, db_path: Path) -> None:
    pending = await signal_in(store, S.PENDING, "EURUSD")
    assert not await store.submit_order(pending, OrderRequest(pending, "EURUSD", Side.LONG, Decimal(1)), T0)
    assert not await store.submit_order("ffffffffff", OrderRequest("ffffffffff", "EURUSD", Side.LONG, Decimal(1)), T0)
    assert await status_of(store, pending) is S.PENDING
    assert scalar(db_path, "SELECT count(*) FROM orders") == 0


@pytest.mark.parametrize(
    ("request_for", "message"),
    [
        (lambda sid: OrderRequest("someoneelse", "EURUSD", Side.LONG, Decimal(1)), "must be the signal id"),
        (lambda sid: OrderRequest(sid, "GBPUSD", Side.LONG, Decimal(1)), "does not match signal"),
        (lambda sid: OrderRequest(sid, "EURUSD", Side.SHORT, Decimal(1)), "does not match signal"),
    ],
)
async def test_an_order_not_for_its_signal_is_refused(
    store: SqliteStore, db_path: Path, request_for: Any, message: str
) -> None:
    signal_id = await signal_in(store, S.APPROVED, "EURUSD")
    with pytest.raises(ValueError, match=message):
        await store.submit_order(signal_id, request_for(signal_id), T0)
    assert await status_of(store, signal_id) is S.APPROVED
    assert scalar(db_path, "SELECT count(*) FROM orders") == 0


async def test_submit_order_is_atomic(store: SqliteStore, db_path: Path) -> None:
    signal_id = await signal_in(store, S.APPROVED, "EURUSD")
    with plain(db_path) as conn:
        conn.execute("CREATE TRIGGER no_orders BEFORE INSERT ON orders BEGIN SELECT RAISE(ABORT, 'orders off'); END")
    request = OrderRequest(signal_id, "EURUSD", Side.LONG, Decimal(1))

    with pytest.raises(StoreError, match=f"could not submit the order of signal {signal_id}.*orders off"):
        await store.submit_order(signal_id, request, T0)
    assert await status_of(store, signal_id) is S.APPROVED

    with plain(db_path) as conn:
        conn.execute("DROP TRIGGER no_orders")
    assert await store.submit_order(signal_id, request, T0)


async def test_record_fill_fills_the_order_and_opens_the_trade_once(store: SqliteStore) -> None:
    signal_id, symbol = await approved_with_order(store)
    fill = make_fill(signal_id, symbol)
    trade = fill_trade(fill)

    assert await store.record_fill(fill, trade)
    assert not await store.record_fill(fill, trade)
    assert not await store.record_fill(replace(fill, price=Decimal("99")), replace(trade, trade_id="other"))

    assert await status_of(store, signal_id) is S.FILLED
    assert await store.order_fill(signal_id) == fill
    assert await store.open_trades() == [trade]
    assert await store.open_trades([TradeKind.PAPER]) == [trade]
    assert await store.open_trades([TradeKind.SHADOW, TradeKind.LIVE]) == []


async def test_record_fill_before_the_order_is_submitted_writes_nothing(store: SqliteStore, db_path: Path) -> None:
    signal_id = await signal_in(store, S.APPROVED, "EURUSD")
    fill = make_fill(signal_id, "EURUSD")
    assert not await store.record_fill(fill, fill_trade(fill))
    assert await status_of(store, signal_id) is S.APPROVED
    assert scalar(db_path, "SELECT count(*) FROM trades") == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": TradeKind.SHADOW}, "opens an open paper or live trade"),
        ({"quantity": Decimal("2.49")}, "does not match fill"),
        ({"side": Side.SHORT, "stop": Decimal("101"), "target": Decimal("98")}, "does not match fill"),
        ({"signal_id": "elsewhere0"}, "does not match fill"),
    ],
)
async def test_a_trade_that_is_not_the_fills_position_is_refused(
    store: SqliteStore, changes: dict[str, Any], message: str
) -> None:
    signal_id, symbol = await approved_with_order(store)
    fill = make_fill(signal_id, symbol)
    trade = replace(fill_trade(fill), **changes)
    with pytest.raises(ValueError, match=message):
        await store.record_fill(fill, trade)
    assert await status_of(store, signal_id) is S.ORDER_SUBMITTED


async def test_record_fill_is_atomic_when_the_trade_insert_fails(store: SqliteStore, db_path: Path) -> None:
    signal_id, symbol = await approved_with_order(store)
    with plain(db_path) as conn:
        conn.execute("CREATE TRIGGER no_trades BEFORE INSERT ON trades BEGIN SELECT RAISE(ABORT, 'trades off'); END")
    fill = make_fill(signal_id, symbol)

    with pytest.raises(StoreError, match=f"could not record the fill of order {signal_id}.*trades off"):
        await store.record_fill(fill, fill_trade(fill))

    assert await status_of(store, signal_id) is S.ORDER_SUBMITTED
    assert await store.order_fill(signal_id) is None
    assert scalar(db_path, "SELECT count(*) FROM orders WHERE fill_price IS NOT NULL") == 0
    with plain(db_path) as conn:
        conn.execute("DROP TRIGGER no_trades")
    assert await store.record_fill(fill, fill_trade(fill))  # the retry still works
    assert await store.order_fill(signal_id) == fill


# --- trades --------------------------------------------------------------------------------------------------


async def test_shadow_trades_are_tracked_once_per_signal(store: SqliteStore) -> None:
    signal_id = await signal_in(store, S.REJECTED, "EURUSD")
    shadow = make_trade(signal_id, TradeKind.SHADOW)

    assert await store.open_shadow_trade(shadow)
    assert not await store.open_shadow_trade(replace(shadow, trade_id="second-try"))
    with pytest.raises(DuplicateTradeError, match=f"trade id {shadow.trade_id} is already used"):
        await store.open_shadow_trade(make_trade("anothersig", TradeKind.SHADOW, trade_id=shadow.trade_id))
    with pytest.raises(ValueError, match="must be an open shadow trade"):
        await store.open_shadow_trade(make_trade(signal_id, TradeKind.PAPER))
    assert await store.open_trades([TradeKind.SHADOW]) == [shadow]


async def test_external_trades_are_stored_closed_once_per_signal(store: SqliteStore) -> None:
    closed = make_trade("notstored1", TradeKind.EXTERNAL).closed(
        T0 + timedelta(hours=1), Decimal("103.00"), ExitReason.EXTERNAL, Decimal("0.5")
    )
    await store.record_external_trade(closed)  # the signal need not be stored
    with pytest.raises(DuplicateTradeError, match="already has a reported external trade"):
        await store.record_external_trade(replace(closed, trade_id="again"))
    with pytest.raises(ValueError, match="must be a closed external trade"):
        await store.record_external_trade(make_trade("notstored2", TradeKind.EXTERNAL))
    assert await store.trades([TradeKind.EXTERNAL]) == [closed]
    assert await store.open_trades() == []


async def test_close_trade_closes_once(store: SqliteStore) -> None:
    trade = make_trade(await signal_in(store, S.REJECTED), TradeKind.SHADOW)
    assert await store.open_shadow_trade(trade)
    at = T0 + timedelta(minutes=45, microseconds=7)

    with pytest.raises(ValueError, match="before its entry"):
        await store.close_trade(trade.trade_id, T0 - timedelta(seconds=1), Decimal("99"), ExitReason.STOP, Decimal(0))
    assert await store.close_trade(trade.trade_id, at, Decimal("99.00"), ExitReason.STOP, Decimal("0.1"))
    assert not await store.close_trade(trade.trade_id, at, Decimal("103.00"), ExitReason.TARGET, Decimal(0))
    with pytest.raises(UnknownRecordError, match="no trade nosuch"):
        await store.close_trade("nosuch", at, Decimal("99.00"), ExitReason.STOP, Decimal(0))
    with pytest.raises(ValueError, match="exit fees must be non-negative"):
        await store.close_trade(trade.trade_id, at, Decimal("99.00"), ExitReason.STOP, Decimal(-1))

    assert await store.open_trades() == []
    [closed] = await store.trades()
    assert closed == trade.closed(at, Decimal("99.00"), ExitReason.STOP, Decimal("0.1"))


async def test_trades_round_trip_exactly_with_their_pnl(db_path: Path) -> None:
    open_trade = make_trade(
        "sig-open00",
        TradeKind.SHADOW,
        side=Side.SHORT,
        quantity=Decimal("0.00012300"),
        contract_size=Decimal("1E+5"),
        entry_price=Decimal("1.08725"),
        stop=Decimal("1.08800"),
        target=Decimal("1.08500"),
        entry_time=T0 + timedelta(microseconds=1),
    )
    closed = make_trade("sig-closed", TradeKind.EXTERNAL, approver_id=-1001234, approval_latency_s=0.1).closed(
        T0 + timedelta(hours=3), Decimal("101.37"), ExitReason.EXTERNAL, Decimal("0.3333")
    )
    async with await SqliteStore.open(db_path) as store:
        assert await store.open_shadow_trade(open_trade)
        await store.record_external_trade(closed)

    async with await SqliteStore.open(db_path) as store:
        [loaded_open] = await store.open_trades()
        [loaded_closed] = await store.trades()
    assert loaded_open == open_trade and loaded_closed == closed
    assert str(loaded_open.quantity) == "0.00012300" and str(loaded_open.contract_size) == "1E+5"
    assert loaded_open.entry_time.tzinfo is UTC and loaded_open.pnl is None
    assert loaded_closed.pnl == closed.pnl == Decimal("2.9667") and loaded_closed.pnl_r == closed.pnl_r
    assert loaded_closed.approval_latency_s == 0.1 and loaded_closed.approver_id == -1001234
    assert isinstance(loaded_closed.exit_reason, ExitReason) and isinstance(loaded_closed.kind, TradeKind)
    with plain(db_path) as conn:
        types = conn.execute("SELECT typeof(quantity), typeof(exit_price), typeof(exit_fees) FROM trades").fetchall()
    assert set(types) == {("text", "text", "text"), ("text", "null", "text")}


async def test_closed_trades_filter_by_kind_and_exit_time_oldest_first(store: SqliteStore) -> None:
    exits = {
        "a": (TradeKind.SHADOW, T0 + timedelta(hours=2, microseconds=500)),
        "b": (TradeKind.EXTERNAL, T0 + timedelta(hours=2)),
        "c": (TradeKind.EXTERNAL, T0 + timedelta(hours=1)),
        "d": (TradeKind.SHADOW, None),
    }
    for name, (kind, exit_at) in exits.items():
        trade = make_trade(f"signal-{name}", kind)
        if kind is TradeKind.SHADOW:
            assert await store.open_shadow_trade(trade)
            if exit_at is not None:
                assert await store.close_trade(trade.trade_id, exit_at, Decimal("101"), ExitReason.TIME, Decimal(0))
        else:
            assert exit_at is not None
            await store.record_external_trade(trade.closed(exit_at, Decimal("101"), ExitReason.EXTERNAL))

    def names(trades: Sequence[Trade]) -> list[str]:
        return [t.signal_id.removeprefix("signal-") for t in trades]

    assert names(await store.trades()) == ["c", "b", "a"]
    assert names(await store.trades(closed_since=T0 + timedelta(hours=2))) == ["b", "a"]
    assert names(await store.trades(closed_since=T0 + timedelta(hours=2, microseconds=1))) == ["a"]
    assert names(await store.trades({TradeKind.EXTERNAL})) == ["c", "b"]
    assert names(await store.trades([])) == []
    assert names(await store.open_trades()) == ["d"]
    with pytest.raises(TypeError, match="kinds must be a collection"):
        await store.trades("shadow")  # type: ignore[arg-type]


async def test_a_long_closed_book_is_decoded_off_the_event_loop_in_exit_order(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = BULK_DECODE_ROWS + 44
    for k in range(count):
        trade = make_trade(f"bulk-{k:03d}", TradeKind.EXTERNAL)
        await store.record_external_trade(
            trade.closed(T0 + timedelta(minutes=count - k), Decimal("101"), ExitReason.EXTERNAL)
        )
    threads: set[int] = set()
    decode = trades_module._decode_trade

    def watched(row: sqlite3.Row) -> Trade:
        threads.add(threading.get_ident())
        return decode(row)

    monkeypatch.setattr(trades_module, "_decode_trade", watched)
    book = await store.trades()
    assert [t.signal_id for t in book] == [f"bulk-{k:03d}" for k in reversed(range(count))]  # oldest exit first
    assert threads and threading.get_ident() not in threads  # the loop ran on while they were decoded
    threads.clear()
    assert len(await store.trades(closed_since=T0 + timedelta(minutes=count - 3))) == 4
    assert threads == {threading.get_ident()}  # a handful: decoded at once, no thread hop


# --- outbox --------------------------------------------------------------------------------------------------


async def test_outbox_serves_due_messages_oldest_first_and_schedules_retries(store: SqliteStore) -> None:
    signal_id = await new_signal(store)
    first = await store.enqueue(OutboxKind.SIGNAL, -100123, {"text": "a"}, T0, signal_id)
    second = await store.enqueue(OutboxKind.TEXT, 555, {"text": "b"}, T0 + timedelta(seconds=1))
    third = await store.enqueue(OutboxKind.EDIT, 555, {"text": "c", "message_id": 9}, T0 + timedelta(seconds=2))
    assert first < second < third
    assert await store.outbox_size() == 3

    assert [m.item_id for m in await store.due_messages(T0)] == [first, second, third]
    assert [m.item_id for m in await store.due_messages(T0, limit=2)] == [first, second]

    retry_at = T0 + timedelta(seconds=30)
    await store.mark_failed_attempt(first, retry_at, "RetryAfter: 30")
    await store.mark_failed_attempt(first, retry_at, "RetryAfter: 30")
    await store.mark_sent(second, T0 + timedelta(seconds=3))
    await store.mark_sent(second, T0 + timedelta(seconds=9))  # idempotent

    assert [m.item_id for m in await store.due_messages(T0 + timedelta(seconds=29, microseconds=999_999))] == [third]
    due = await store.due_messages(retry_at)
    assert [m.item_id for m in due] == [first, third]
    item = due[0]
    assert (item.kind, item.chat_id, item.signal_id, item.attempts) == (OutboxKind.SIGNAL, -100123, signal_id, 2)
    assert (item.next_attempt_at, item.last_error, item.created_at) == (retry_at, "RetryAfter: 30", T0)
    assert await store.outbox_size() == 2

    with pytest.raises(UnknownRecordError, match="no outbox item 999"):
        await store.mark_sent(999, T0)
    with pytest.raises(UnknownRecordError, match="no outbox item 999"):
        await store.mark_failed_attempt(999, T0, "x")
    await store.mark_failed_attempt(second, retry_at, "late")  # already sent: no-op
    assert await store.outbox_size() == 2


async def test_outbox_payload_round_trips_exactly(store: SqliteStore) -> None:
    payload = {
        "text": "<b>EURUSD</b> long — ✅ 1.08725",
        "float": 0.1,
        "tiny": 1e-300,
        "big": 2**62,
        "flags": [True, False, None],
        "nested": {"buttons": [["Approve", "approve:abc"], ["Reject", "reject:abc"]]},
    }
    await store.enqueue(OutboxKind.TEXT, 1, payload, T0)
    [item] = await store.due_messages(T0)
    assert item.payload == payload
    assert type(item.payload["float"]) is float and type(item.payload["big"]) is int


@pytest.mark.parametrize(
    "payload",
    [{"buttons": ("a", "b")}, {1: "int key"}, {"x": float("nan")}, {"price": Decimal("1.1")}, ["not", "a", "dict"]],
)
async def test_payloads_that_would_not_read_back_unchanged_are_refused(store: SqliteStore, payload: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="payload"):
        await store.enqueue(OutboxKind.TEXT, 1, payload, T0)
    assert await store.outbox_size() == 0


# --- signal messages and state ----------------------------------------------------------------------------------


async def test_signal_messages_link_both_ways_and_idempotently(store: SqliteStore) -> None:
    a, b = await new_signal(store), await new_signal(store)
    for signal_id, chat_id, message_id in [(a, 1, 10), (a, 2, 20), (b, 1, 30), (a, 1, 30), (a, 1, 10)]:
        await store.add_signal_message(signal_id, chat_id, message_id)

    assert await store.signal_messages(a) == [(1, 10), (2, 20), (1, 30)]
    assert await store.signal_messages(b) == [(1, 30)]
    assert await store.message_signals(1, 30) == [b, a]  # a digest, in the order added
    assert await store.message_signals(1, 99) == []
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        await store.add_signal_message("ffffffffff", 1, 40)


async def test_state_is_upserted_and_survives_reopening(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as store:
        assert await store.get_state("paused") is None
        await store.set_state("paused", "true")
        await store.set_state("paused", "false")
        await store.set_state("mode", "quality")
    async with await SqliteStore.open(db_path) as store:
        assert (await store.get_state("paused"), await store.get_state("mode")) == ("false", "quality")
        with pytest.raises(ValueError, match="key must be a non-empty string"):
            await store.set_state("", "x")
    assert scalar(db_path, "SELECT count(*) FROM bot_state") == 2


async def test_the_whole_lifecycle_survives_reopening(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as store:
        signal_id, symbol = await approved_with_order(store)
        fill = make_fill(signal_id, symbol)
        assert await store.record_fill(fill, fill_trade(fill))
        item = await store.enqueue(OutboxKind.TEXT, 7, {"text": "filled"}, T0, signal_id)
        before = await store.signal(signal_id)
    async with await SqliteStore.open(db_path) as store:
        assert await store.signal(signal_id) == before
        assert await store.order_fill(signal_id) == fill
        assert await store.open_trades() == [fill_trade(fill)]
        assert [m.item_id for m in await store.due_messages(T0)] == [item]
    with plain(db_path) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
