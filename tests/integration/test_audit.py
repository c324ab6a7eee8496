"""The audit trail: written in the transaction of the change it records, append-only, and never holding a secret."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from data.sqlite.store import SqliteStore, StoreError
from engine.audit import AuditEvent, AuditKind
from engine.domain import Side, SignalStatus
from engine.trading import OrderRequest
from tests.integration.test_bot_store import T0, approved_with_order, fill_trade, make_fill, signal_in
from tests.integration.test_store import plain

S = SignalStatus


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with await SqliteStore.open(tmp_path / "bot.db") as opened:
        yield opened


async def test_each_decision_is_recorded_with_who_and_how_long_after_the_offer(store: SqliteStore) -> None:
    signal_id = await signal_in(store, S.PENDING, "EURUSD")
    request = OrderRequest(signal_id, "EURUSD", Side.LONG, Decimal("1"))
    later = T0.replace(second=12)
    assert await store.approve_order(signal_id, S.PENDING, request, later, by=42, reason="approved in the chat")
    kinds = [(e.kind, e.actor) for e in reversed(await store.audit_events())]
    assert kinds == [
        (AuditKind.SIGNAL_OFFERED, "bot"),
        (AuditKind.SIGNAL_APPROVED, "42"),
        (AuditKind.ORDER_SENT, "bot"),
    ]
    approved = (await store.audit_events())[1]
    assert approved.detail == "EURUSD breakout long: approved in the chat · 12.0 s after the offer"


async def test_the_trail_is_append_only(store: SqliteStore, tmp_path: Path) -> None:
    await store.audit(AuditEvent(T0, AuditKind.LOGIN, "42", "kite", "session until tomorrow"))
    with plain(tmp_path / "bot.db") as conn:
        for sql in ("UPDATE audit_events SET detail = 'edited'", "DELETE FROM audit_events"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
    [event] = await store.audit_events()
    assert event.detail == "session until tomorrow"


async def test_a_change_that_does_not_commit_leaves_no_line(store: SqliteStore, tmp_path: Path) -> None:
    signal_id, symbol = await approved_with_order(store)
    before = len(await store.audit_events())
    with plain(tmp_path / "bot.db") as conn:
        conn.execute("CREATE TRIGGER no_trades BEFORE INSERT ON trades BEGIN SELECT RAISE(ABORT, 'trades off'); END")
    fill = make_fill(signal_id, symbol)
    with pytest.raises(StoreError, match="trades off"):
        await store.record_fill(fill, fill_trade(fill))
    assert len(await store.audit_events()) == before  # the fill's line rolled back with it


async def test_a_secret_never_reaches_the_trail(store: SqliteStore) -> None:
    secret = "kite-access-token-0123456789abcdef"
    store.mask(secret)
    await store.set_state("mode", "auto", audit_by="42", detail=f"mode set; a broker echoed {secret}")
    await store.audit(AuditEvent(T0, AuditKind.LOGIN, "42", "kite", f"token {secret}"))
    for event in await store.audit_events():
        assert secret not in event.detail
