"""Signals: their lifecycle, messages and decisions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from data.sqlite.audit import audit_order, audit_signal_move
from data.sqlite.codecs import (
    _TRANSITION_SQL,
    _check_int,
    _check_text,
    _check_transition,
    _encode_order,
    _encode_ts_key,
    _enum_arg,
    _transition_params,
    _ts_key,
)
from data.sqlite.connection import StoreBase
from data.sqlite.errors import StoreError
from data.sqlite.queries import (
    _cas_status,
    _Db,
    _decision_stamp,
    _execute,
    _fetchall,
    _insert_order,
    _order_may_be_placed,
    _rowcount,
    decoded,
)
from data.sqlite.records import _decode_signal_record, _decode_ts
from engine.domain import (
    SignalStatus,
)
from engine.ports import DecisionChanged, SignalRecord
from engine.trading import OrderRequest


class SignalBook(StoreBase):
    """Signals: their lifecycle, messages and decisions."""

    # --- signal lifecycle (BotStore) -------------------------------------------------------------------------

    async def signal(self, signal_id: str) -> SignalRecord | None:
        """Return the signal with its lifecycle fields, or None if there is none."""
        _check_text(signal_id, "signal_id")
        async with self._read(f"read signal {signal_id}") as db:
            rows = await _fetchall(db, "SELECT * FROM signals WHERE signal_id = ?", (signal_id,))
        return _decode_signal_record(rows[0]) if rows else None

    async def signals_with_status(
        self, status: SignalStatus, expiring_by: datetime | None = None, created_since: datetime | None = None
    ) -> list[SignalRecord]:
        """Signals in `status` (with `expiring_by`: only those whose expires_at <= it; with `created_since`: only
        those created at or after it), oldest first."""
        sql = "SELECT * FROM signals WHERE status = ?"
        params: list[Any] = [_enum_arg(SignalStatus, status, "status").value]
        if expiring_by is not None:
            sql += f" AND expires_at IS NOT NULL AND {_ts_key('expires_at')} <= ?"
            params.append(_encode_ts_key(expiring_by, "expiring_by"))
        if created_since is not None:
            sql += f" AND {_ts_key('created_at')} >= ?"
            params.append(_encode_ts_key(created_since, "created_since"))
        async with self._read(f"read the {status} signals") as db:
            rows = await _fetchall(db, f"{sql} ORDER BY {_ts_key('created_at')}, rowid", params)
        return await decoded(rows, _decode_signal_record)

    async def recent_signals(self, limit: int = 20) -> list[SignalRecord]:
        """The newest `limit` signals, newest first, whatever their status."""
        async with self._read("read the recent signals") as db:
            rows = await _fetchall(
                db, f"SELECT * FROM signals ORDER BY {_ts_key('created_at')} DESC, rowid DESC LIMIT ?", (limit,)
            )
        return await decoded(rows, _decode_signal_record)

    async def transition(
        self,
        signal_id: str,
        expected: SignalStatus,
        to: SignalStatus,
        at: datetime,
        *,
        by: int | None = None,
        reason: str | None = None,
        quantity: Decimal | None = None,
        expires_at: datetime | None = None,
    ) -> bool:
        """Compare-and-set the status: True iff it was `expected` and is now `to` (False for an unknown id).

        Illegal moves raise ValueError, and so do moves to ORDER_SUBMITTED or FILLED: `submit_order` and
        `record_fill` make those with their order and fill. Leaving NEW for PENDING or APPROVED sets offered_at;
        the first move to anything but PENDING sets decided_at. `by`, `reason`, `quantity` and `expires_at`
        overwrite the stored values when given and keep them when None.
        """
        expected, to = _check_transition(expected, to)
        params = _transition_params(signal_id, expected, to, at, by, reason, quantity, expires_at)

        async def write(db: _Db) -> bool:
            if await _rowcount(db, _TRANSITION_SQL, params) != 1:
                return False
            await audit_signal_move(db, signal_id, to, at, by, reason)
            return True

        return await self._transact(f"move signal {signal_id} from {expected} to {to}", write)

    async def decision_stamp(self, state_keys: Sequence[str] = ()) -> str:
        """A token of everything a decision to trade reads that another task or process can change meanwhile: the
        values of `state_keys` (the pause flag), the trades and orders (the book the protections judge), the pair
        controls and the baselines. Two equal stamps: none of it changed in between."""
        async with self._read("read the decision stamp") as db:
            return await _decision_stamp(db, state_keys)

    async def approve_order(
        self,
        signal_id: str,
        expected: SignalStatus,
        request: OrderRequest,
        at: datetime,
        *,
        by: int | None = None,
        reason: str | None = None,
        expires_at: datetime | None = None,
        stamp: tuple[str, Sequence[str]] | None = None,
    ) -> bool:
        """In ONE transaction: `expected` (NEW or PENDING) -> APPROVED -> ORDER_SUBMITTED with the order intent.

        The approval and the order to send commit together or not at all, so a crash right after the commit
        leaves an ORDER_SUBMITTED signal with its order row: the restart reconciles it with the broker by its
        client order id instead of losing or repeating it. False (nothing written) when the signal was not in
        `expected` or already has an order. `stamp` (a `decision_stamp` and its state keys, read before the
        checks that decided this): raises DecisionChanged, writing nothing, when what it covers changed since,
        so every check holds at the commit that creates the order intent.
        """
        if expected not in (SignalStatus.NEW, SignalStatus.PENDING):
            raise ValueError(f"an order is approved from new or pending, not from {expected}")
        approve = _transition_params(
            signal_id, expected, SignalStatus.APPROVED, at, by, reason, request.quantity, expires_at
        )
        order = _encode_order(signal_id, request, at)

        async def write(db: _Db) -> bool:
            if stamp is not None and await _decision_stamp(db, stamp[1]) != stamp[0]:
                raise DecisionChanged(f"what decided signal {signal_id} changed before its order was committed")
            if not await _order_may_be_placed(db, request):
                return False
            if await _rowcount(db, _TRANSITION_SQL, approve) != 1:
                return False
            if not await _cas_status(db, signal_id, SignalStatus.APPROVED, SignalStatus.ORDER_SUBMITTED, order[4]):
                raise StoreError(f"signal {signal_id} left approved inside its own transaction")
            await _insert_order(db, order)
            await audit_signal_move(db, signal_id, SignalStatus.APPROVED, at, by, reason)
            await audit_order(db, signal_id, request, at)
            return True

        return await self._transact(f"approve signal {signal_id} and record its order", write)

    async def last_offered_at(self, symbol: str) -> datetime | None:
        """When a signal of `symbol` was last offered or auto-executed (signals never offered are ignored)."""
        _check_text(symbol, "symbol")
        async with self._read(f"read when {symbol} was last offered") as db:
            rows = await _fetchall(
                db,
                "SELECT offered_at FROM signals WHERE symbol = ? AND offered_at IS NOT NULL"
                f" ORDER BY {_ts_key('offered_at')} DESC LIMIT 1",
                (symbol,),
            )
        return _decode_ts(rows[0][0], f"last offered_at of {symbol}") if rows else None

    async def add_signal_message(self, signal_id: str, chat_id: int, message_id: int) -> None:
        """Remember that a message shows the signal (idempotent; the signal must be stored)."""
        _check_text(signal_id, "signal_id")
        params = (signal_id, _check_int(chat_id, "chat_id"), _check_int(message_id, "message_id"))

        async def write(db: _Db) -> None:
            await _execute(
                db,
                "INSERT INTO signal_messages (signal_id, chat_id, message_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                params,
            )

        await self._transact(f"record a message of signal {signal_id}", write)

    async def signal_messages(self, signal_id: str) -> list[tuple[int, int]]:
        """(chat_id, message_id) of every message that shows this signal, in the order they were added."""
        _check_text(signal_id, "signal_id")
        async with self._read(f"read the messages of signal {signal_id}") as db:
            rows = await _fetchall(
                db, "SELECT chat_id, message_id FROM signal_messages WHERE signal_id = ? ORDER BY id", (signal_id,)
            )
        return [(int(row[0]), int(row[1])) for row in rows]

    async def message_signals(self, chat_id: int, message_id: int) -> list[str]:
        """Signal ids shown by one message (several for a digest), in the order they were added."""
        params = (_check_int(chat_id, "chat_id"), _check_int(message_id, "message_id"))
        async with self._read(f"read the signals of message {message_id} in chat {chat_id}") as db:
            rows = await _fetchall(
                db, "SELECT signal_id FROM signal_messages WHERE chat_id = ? AND message_id = ? ORDER BY id", params
            )
        return [str(row[0]) for row in rows]
