"""Orders, fills and trades, and the trader's actions on open positions."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal

from data.sqlite.audit import append_audit, audit_order
from data.sqlite.codecs import (
    _IN_CHUNK,
    _check_fill_opens,
    _check_int,
    _check_text,
    _encode_amount,
    _encode_fill,
    _encode_order,
    _encode_trade,
    _encode_ts,
    _encode_ts_key,
    _enum_arg,
    _json,
    _kinds_filter,
    _ts_key,
)
from data.sqlite.connection import StoreBase
from data.sqlite.errors import DuplicateTradeError
from data.sqlite.queries import (
    _cas_status,
    _Db,
    _execute,
    _fetchall,
    _insert_order,
    _insert_trade,
    _open_trade_entry_time,
    _order_may_be_placed,
    _rowcount,
    _store_fill,
    decoded,
)
from data.sqlite.records import _decode_decimal, _decode_fill, _decode_trade, _decode_ts
from engine.audit import BOT_ACTOR, AuditEvent, AuditKind, actor_of
from engine.domain import (
    SignalStatus,
)
from engine.trading import (
    ExitReason,
    Fill,
    OrderRequest,
    PartialExit,
    StopMove,
    Trade,
    TradeAction,
    TradeKind,
)


class TradeLedger(StoreBase):
    """Orders, fills and trades, and the trader's actions on open positions."""

    # --- orders and trades (BotStore) ------------------------------------------------------------------------

    async def submit_order(self, signal_id: str, request: OrderRequest, at: datetime) -> bool:
        """Atomically APPROVED -> ORDER_SUBMITTED and record the order; False (nothing written) if that fails.

        The order's client_order_id must be the signal id and its symbol and side the signal's (ValueError).
        """
        params = _encode_order(signal_id, request, at)

        async def write(db: _Db) -> bool:
            if not await _order_may_be_placed(db, request):
                return False
            if not await _cas_status(db, signal_id, SignalStatus.APPROVED, SignalStatus.ORDER_SUBMITTED, params[4]):
                return False
            await _insert_order(db, params)
            await audit_order(db, signal_id, request, at)
            return True

        return await self._transact(f"submit the order of signal {signal_id}", write)

    async def record_fill(self, fill: Fill, trade: Trade) -> bool:
        """Atomically ORDER_SUBMITTED -> FILLED, store the fill and open the trade; False if already done.

        `trade` must be the open PAPER or LIVE trade of that fill (same signal, symbol, side and quantity).
        """
        fill_params = _encode_fill(fill)
        trade_params = _encode_trade(trade)
        _check_fill_opens(fill, trade)
        signal_id = fill.client_order_id

        async def write(db: _Db) -> bool:
            filled_at = fill_params[3]
            if not await _cas_status(db, signal_id, SignalStatus.ORDER_SUBMITTED, SignalStatus.FILLED, filled_at):
                return False
            await _store_fill(db, signal_id, fill_params)
            if not await _insert_trade(db, trade_params):
                raise DuplicateTradeError(f"signal {signal_id} already has a {trade.kind} trade")
            detail = (
                f"{trade.kind.value} {trade.side.value} {fill.quantity} {trade.symbol} @ {fill.price}, fees {fill.fees}"
            )
            await append_audit(db, AuditEvent(fill.filled_at, AuditKind.ORDER_FILLED, BOT_ACTOR, signal_id, detail))
            return True

        return await self._transact(f"record the fill of order {signal_id}", write)

    async def order_fill(self, client_order_id: str) -> Fill | None:
        """The fill of the order, or None if there is no such order or it is not filled yet."""
        _check_text(client_order_id, "client_order_id")
        async with self._read(f"read the fill of order {client_order_id}") as db:
            rows = await _fetchall(
                db, "SELECT * FROM orders WHERE client_order_id = ? AND filled_at IS NOT NULL", (client_order_id,)
            )
        return _decode_fill(rows[0]) if rows else None

    async def open_shadow_trade(self, trade: Trade) -> bool:
        """Track the hypothetical outcome of a rejected/expired signal; False if that signal already has one."""
        params = _encode_trade(trade)
        if trade.kind is not TradeKind.SHADOW or not trade.is_open:
            raise ValueError(f"trade {trade.trade_id} must be an open {TradeKind.SHADOW} trade, was {trade.kind}")

        async def write(db: _Db) -> bool:
            return await _insert_trade(db, params)

        return await self._transact(f"open the shadow trade of signal {trade.signal_id}", write)

    async def record_external_trade(self, trade: Trade) -> None:
        """Store a closed EXTERNAL trade; its signal_id need not be a stored signal (the caller checks if it must).

        A signal has at most one external trade: reporting it again raises DuplicateTradeError.
        """
        params = _encode_trade(trade)
        if trade.kind is not TradeKind.EXTERNAL or trade.is_open:
            raise ValueError(f"trade {trade.trade_id} must be a closed {TradeKind.EXTERNAL} trade, was {trade.kind}")

        async def write(db: _Db) -> None:
            if not await _insert_trade(db, params):
                raise DuplicateTradeError(f"signal {trade.signal_id} already has a reported {trade.kind} trade")
            assert trade.exit_time is not None  # checked above: a reported trade is closed
            detail = f"{trade.symbol} {trade.side.value} {trade.quantity} @ {trade.entry_price} -> {trade.exit_price}"
            event = AuditEvent(
                trade.exit_time, AuditKind.OUTCOME_REPORTED, actor_of(trade.approver_id), trade.signal_id, detail
            )
            await append_audit(db, event)

        await self._transact(f"record the external trade of signal {trade.signal_id}", write)

    async def close_trade(self, trade_id: str, at: datetime, price: Decimal, reason: ExitReason, fees: Decimal) -> bool:
        """Close an open trade; False if it was already closed, UnknownRecordError if there is no such trade."""
        _check_text(trade_id, "trade_id")
        params = (
            _encode_ts(at, "at"),
            _encode_amount(price, "exit price", positive=True),
            _enum_arg(ExitReason, reason, "reason").value,
            _encode_amount(fees, "exit fees", positive=False),
            trade_id,
        )

        async def write(db: _Db) -> bool:
            entry_time = await _open_trade_entry_time(db, trade_id)
            if entry_time is None:
                return False
            if at < entry_time:
                raise ValueError(f"trade {trade_id} cannot exit at {params[0]}, before its entry at {entry_time}")
            closed = await _rowcount(
                db,
                "UPDATE trades SET exit_time = ?, exit_price = ?, exit_reason = ?, exit_fees = ?"
                " WHERE trade_id = ? AND exit_time IS NULL",
                params,
            )
            if closed:
                who = await _fetchall(
                    db,
                    "SELECT requested_by FROM trade_actions WHERE trade_id = ? AND action = 'close'"
                    " AND status IN ('requested', 'done')",
                    (trade_id,),
                )
                actor = actor_of(int(who[0][0]) if who else None)
                detail = f"{reason.value} @ {price}, fees {fees}"
                await append_audit(db, AuditEvent(at, AuditKind.POSITION_CLOSED, actor, trade_id, detail))
            return bool(closed)

        return await self._transact(f"close trade {trade_id}", write)

    async def open_trades(self, kinds: Collection[TradeKind] | None = None) -> list[Trade]:
        """Open trades of the given kinds (all when None), oldest entry first."""
        where, params = _kinds_filter(kinds)
        async with self._read("read the open trades") as db:
            rows = await _fetchall(
                db,
                f"SELECT * FROM trades WHERE exit_time IS NULL{where} ORDER BY {_ts_key('entry_time')}, trade_id",
                params,
            )
        return await decoded(rows, _decode_trade)

    async def trades(
        self, kinds: Collection[TradeKind] | None = None, closed_since: datetime | None = None
    ) -> list[Trade]:
        """Closed trades of `kinds` (all when None) exited at or after `closed_since`, oldest exit first."""
        where, params = _kinds_filter(kinds)
        if closed_since is not None:
            where += f" AND {_ts_key('exit_time')} >= ?"
            params.append(_encode_ts_key(closed_since, "closed_since"))
        async with self._read("read the closed trades") as db:
            rows = await _fetchall(
                db,
                f"SELECT * FROM trades WHERE exit_time IS NOT NULL{where} ORDER BY {_ts_key('exit_time')}, trade_id",
                params,
            )
        return await decoded(rows, _decode_trade)

    async def closed_after(self, mark: int, kinds: Collection[TradeKind] | None = None) -> list[tuple[int, Trade]]:
        """The trades of `kinds` (all when None) closed after close number `mark`, each with its number, in the
        order they closed."""
        where, params = _kinds_filter(kinds)
        async with self._read("read the trades closed since") as db:
            rows = await _fetchall(
                db, f"SELECT * FROM trades WHERE closed_seq > ?{where} ORDER BY closed_seq", [int(mark), *params]
            )
        return await decoded(rows, lambda row: (int(row["closed_seq"]), _decode_trade(row)))

    async def open_trade(self, trade_id: str) -> Trade | None:
        """The trade if it is open, else None."""
        params = (_check_text(trade_id, "trade_id"),)
        async with self._read(f"read trade {trade_id}") as db:
            rows = await _fetchall(db, "SELECT * FROM trades WHERE trade_id = ? AND exit_time IS NULL", params)
        return _decode_trade(rows[0]) if rows else None

    # --- the trader's actions on open positions (BotStore) ----------------------------------------------------

    async def request_trade_action(self, trade_id: str, action: TradeAction, at: datetime, by: int) -> int | None:
        """Claim an action on an open trade; its id, or None when the trade is closed or another action on it is
        still in flight (so a double press, a second chat or a retry acts once)."""
        params = (_check_text(trade_id, "trade_id"), _enum_arg(TradeAction, action, "action").value)
        stamp = (_encode_ts(at, "at"), _check_int(by, "by"))

        async def write(db: _Db) -> int | None:
            free = await _fetchall(
                db,
                "SELECT 1 FROM trades t WHERE t.trade_id = ? AND t.exit_time IS NULL AND NOT EXISTS"
                " (SELECT 1 FROM trade_actions a WHERE a.trade_id = t.trade_id AND a.status = 'requested')",
                params[:1],
            )
            if not free:  # no such trade, closed, or another action on it in flight
                return None
            action_id = await db.insert(
                "INSERT INTO trade_actions (trade_id, action, status, requested_at, requested_by)"
                " VALUES (?, ?, 'requested', ?, ?)",
                (*params, *stamp),
            )
            assert action_id is not None
            return action_id

        return await self._transact(f"claim a {action} of trade {trade_id}", write)

    async def finish_trade_action(self, action_id: int, done: bool, at: datetime, detail: str = "") -> None:
        """Record how a claimed action ended (a failed one frees the trade for the next)."""
        params = ("done" if done else "failed", _encode_ts(at, "at"), detail, _check_int(action_id, "id"))

        async def write(db: _Db) -> None:
            await _execute(
                db,
                "UPDATE trade_actions SET status = ?, finished_at = ?, detail = ?"
                " WHERE id = ? AND status = 'requested'",
                params,
            )

        await self._transact(f"finish trade action {action_id}", write)

    async def move_trade_stop(self, action_id: int, trade_id: str, old: Decimal, new: Decimal, at: datetime) -> bool:
        """Record the open trade's stop moved from `old` (its current stop) to `new` and finish the claimed action;
        False if the trade closed or its stop changed meanwhile. The trade's own stop stays the one it entered
        with: its risk, and so its R, is measured from that."""
        params = (_check_text(trade_id, "trade_id"),)

        async def write(db: _Db) -> bool:
            rows = await _fetchall(db, "SELECT stop FROM trades WHERE trade_id = ? AND exit_time IS NULL", params)
            if not rows:
                return False
            last = await _fetchall(
                db,
                "SELECT new_stop FROM trade_actions WHERE trade_id = ? AND action = 'stop' AND status = 'done'"
                " ORDER BY id DESC LIMIT 1",
                params,
            )
            current = Decimal(last[0][0] if last else rows[0][0])
            if current != old:
                return False
            await _execute(
                db,
                "UPDATE trade_actions SET status = 'done', finished_at = ?, old_stop = ?, new_stop = ?"
                " WHERE id = ? AND status = 'requested'",
                (
                    _encode_ts(at, "at"),
                    _encode_amount(old, "stop", positive=True),
                    _encode_amount(new, "stop", positive=True),
                    _check_int(action_id, "id"),
                ),
            )
            who = await _fetchall(db, "SELECT requested_by FROM trade_actions WHERE id = ?", (action_id,))
            actor = actor_of(int(who[0][0]) if who and who[0][0] is not None else None)
            await append_audit(db, AuditEvent(at, AuditKind.STOP_MOVED, actor, trade_id, f"stop {old} -> {new}"))
            return True

        return await self._transact(f"move the stop of trade {trade_id}", write)

    async def record_partial_exit(self, exit: PartialExit) -> bool:
        """Record a partial exit of an open trade once (by its number); False when it was recorded already."""
        params = (
            _check_text(exit.trade_id, "trade_id"),
            _check_int(exit.seq, "seq"),
            _encode_ts(exit.at, "at"),
            _encode_amount(exit.price, "partial exit price", positive=True),
            _encode_amount(exit.quantity, "partial exit quantity", positive=True),
            _encode_amount(exit.fees, "partial exit fees", positive=False),
        )

        async def write(db: _Db) -> bool:
            if await _open_trade_entry_time(db, exit.trade_id) is None:
                return False
            inserted = await _rowcount(
                db,
                "INSERT OR IGNORE INTO partial_exits (trade_id, seq, at, price, quantity, fees)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                params,
            )
            if inserted:
                detail = f"{exit.quantity} @ {exit.price}, fees {exit.fees}"
                await append_audit(db, AuditEvent(exit.at, AuditKind.PARTIAL_EXIT, BOT_ACTOR, exit.trade_id, detail))
            return bool(inserted)

        return await self._transact(f"record partial exit {exit.seq} of trade {exit.trade_id}", write)

    async def partial_exits(self, trade_ids: Collection[str]) -> dict[str, list[PartialExit]]:
        """The partial exits of each trade, in order (trades without any are left out)."""
        ids = sorted(set(trade_ids))
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        async with self._read("read partial exits") as db:
            rows = await _fetchall(
                db, f"SELECT * FROM partial_exits WHERE trade_id IN ({marks}) ORDER BY trade_id, seq", ids
            )
        found: dict[str, list[PartialExit]] = {}
        for r in rows:
            found.setdefault(r["trade_id"], []).append(
                PartialExit(
                    r["trade_id"],
                    int(r["seq"]),
                    _decode_ts(r["at"], "partial exit time"),
                    Decimal(r["price"]),
                    Decimal(r["quantity"]),
                    Decimal(r["fees"]),
                )
            )
        return found

    async def stop_moves(self, trade_ids: Collection[str]) -> dict[str, list[StopMove]]:
        """The stop moves of each trade, oldest first (trades without any are left out)."""
        ids = sorted(set(trade_ids))
        out: dict[str, list[StopMove]] = {}
        async with self._read("read stop moves") as db:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                sql = (
                    "SELECT trade_id, finished_at, old_stop, new_stop FROM trade_actions WHERE action = 'stop'"
                    f" AND status = 'done' AND trade_id IN ({', '.join('?' * len(chunk))})"
                    f" ORDER BY {_ts_key('finished_at')}, id"
                )
                for row in await _fetchall(db, sql, chunk):
                    out.setdefault(row["trade_id"], []).append(
                        StopMove(
                            _decode_ts(row["finished_at"], "trade_actions.finished_at"),
                            _decode_decimal(row["old_stop"], "trade_actions.old_stop"),
                            _decode_decimal(row["new_stop"], "trade_actions.new_stop"),
                        )
                    )
        return out

    async def abandon_trade_actions(self, at: datetime) -> int:
        """Fail the actions a stopped process left in flight (at start); return how many."""

        async def write(db: _Db) -> int:
            return await _rowcount(
                db,
                "UPDATE trade_actions SET status = 'failed', finished_at = ?, detail = 'interrupted by a restart'"
                " WHERE status = 'requested'",
                (_encode_ts(at, "at"),),
            )

        return await self._transact("fail interrupted trade actions", write)

    async def create_close_batch(self, trade_ids: Sequence[str], at: datetime, by: int) -> int:
        """Keep the positions a "close all" confirmation shows; its id, for the button."""
        params = (_json([_check_text(t, "trade_id") for t in trade_ids]), _encode_ts(at, "at"), _check_int(by, "by"))

        async def write(db: _Db) -> int:
            batch_id = await db.insert(
                "INSERT INTO close_batches (trade_ids, created_at, created_by) VALUES (?, ?, ?)", params
            )
            assert batch_id is not None
            return batch_id

        return await self._transact("keep a close-all confirmation", write)

    async def use_close_batch(self, batch_id: int, at: datetime, by: int) -> list[str] | None:
        """Mark a close-all confirmation used and return the trades it showed; None if used or unknown."""
        params = (_encode_ts(at, "at"), _check_int(by, "by"), _check_int(batch_id, "id"))

        async def write(db: _Db) -> list[str] | None:
            if not await _rowcount(
                db, "UPDATE close_batches SET used_at = ?, used_by = ? WHERE id = ? AND used_at IS NULL", params
            ):
                return None
            rows = await _fetchall(db, "SELECT trade_ids FROM close_batches WHERE id = ?", params[2:])
            return [str(t) for t in json.loads(rows[0][0])]

        return await self._transact(f"use close-all confirmation {batch_id}", write)
