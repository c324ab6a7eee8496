"""Statements the store's parts share (inside a transaction the caller holds)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from data.sqlite.codecs import _TRADE_COLUMNS, _check_text, _encode_ts, _RejectionRow, _SignalRow
from data.sqlite.errors import DuplicateTradeError, RunStateError, StoreError, UnknownRecordError, UnknownRunError
from data.sqlite.records import _decode_enum, _decode_ts
from data.sqlite.thread import SqliteThread, lastrowid
from engine.domain import (
    RunStatus,
    Side,
    SignalStatus,
)
from engine.trading import OrderRequest

T = TypeVar("T")
BULK_DECODE_ROWS: Final = 256  # more rows than this are decoded in a thread of their own


async def decoded(rows: Sequence[sqlite3.Row], decode: Callable[[sqlite3.Row], T]) -> list[T]:
    """`decode` of every row: here for a few rows; in a thread for many, so the event loop runs on meanwhile (two
    thousand closed trades are tens of milliseconds of Python that would hold it, and every click with it)."""
    if len(rows) <= BULK_DECODE_ROWS:
        return [decode(row) for row in rows]
    return await asyncio.to_thread(lambda: [decode(row) for row in rows])


class _Connection:
    """The connection as the store's statements see it: every text parameter passes the redactor first; each
    statement is one trip to the connection's thread."""

    __slots__ = ("_db", "_redact")

    def __init__(self, db: SqliteThread, redact: Callable[[str], str]) -> None:
        self._db = db
        self._redact = redact

    async def insert(self, sql: str, parameters: Iterable[Any] | None = None) -> int | None:
        return await self._db.insert(sql, _clean(self._redact, parameters))

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> None:
        await self._db.executemany(sql, [_clean(self._redact, p) for p in parameters])

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None) -> list[sqlite3.Row]:
        return await self._db.execute_fetchall(sql, _clean(self._redact, parameters))


class InThread:
    """The same statements run at once on the connection, inside its own thread: a body written for `_Connection`
    runs over this with `finish` (its awaits never suspend), so a whole transaction is one trip."""

    __slots__ = ("_conn", "_redact")

    def __init__(self, conn: sqlite3.Connection, redact: Callable[[str], str]) -> None:
        self._conn = conn
        self._redact = redact

    async def insert(self, sql: str, parameters: Iterable[Any] | None = None) -> int | None:
        return lastrowid(self._conn.execute(sql, _clean(self._redact, parameters)))

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> None:
        self._conn.executemany(sql, [_clean(self._redact, p) for p in parameters]).close()

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None) -> list[sqlite3.Row]:
        return self._conn.execute(sql, _clean(self._redact, parameters)).fetchall()


def _clean(redact: Callable[[str], str], parameters: Iterable[Any] | None) -> tuple[Any, ...]:
    return tuple(redact(p) if isinstance(p, str) else p for p in parameters or ())


_Db = SqliteThread | _Connection | InThread


async def _require_run(db: _Db, run_id: int) -> sqlite3.Row:
    rows = await _fetchall(db, "SELECT id, status, started_at FROM analysis_runs WHERE id = ?", (run_id,))
    if not rows:
        raise UnknownRunError(f"there is no analysis run {run_id}")
    return rows[0]


async def _require_running(db: _Db, run_id: int, finished_at: datetime, action: str) -> None:
    row = await _require_run(db, run_id)
    status = _decode_enum(RunStatus, row["status"], f"analysis run {run_id} status")
    if status is not RunStatus.RUNNING:
        raise RunStateError(f"analysis run {run_id} is already {status}; only a running run can be {action}")
    started_at = _decode_ts(row["started_at"], f"analysis run {run_id} started_at")
    if finished_at < started_at:
        raise ValueError(
            f"finished_at {_encode_ts(finished_at, 'finished_at')} is before run {run_id} started at "
            f"{_encode_ts(started_at, 'started_at')}"
        )


async def _insert_signals(db: _Db, run_id: int, rows: Sequence[_SignalRow], created_at: str) -> None:
    """Insert new signals (keeping the first run's row for known ids) and link all of them to the run."""
    await _executemany(
        db,
        "INSERT INTO signals (signal_id, run_id, strategy, symbol, side, timeframe, bar_time, entry, stop, targets,"
        " reasons, quality, components, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (signal_id) DO NOTHING",
        [
            (
                r.signal_id,
                run_id,
                r.strategy,
                r.symbol,
                r.side,
                r.timeframe,
                r.bar_time,
                r.entry,
                r.stop,
                r.targets,
                r.reasons,
                r.quality,
                r.components,
                SignalStatus.NEW.value,
                created_at,
            )
            for r in rows
        ],
    )
    await _executemany(
        db,
        "INSERT INTO run_signals (run_id, signal_id, position) VALUES (?, ?, ?)",
        [(run_id, r.signal_id, position) for position, r in enumerate(rows)],
    )


async def _insert_rejections(db: _Db, run_id: int, rows: Sequence[_RejectionRow]) -> None:
    await _executemany(
        db,
        "INSERT INTO rejections (run_id, kind, symbol, strategy, bar_time, reason, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(run_id, r.kind.value, r.symbol, r.strategy, r.bar_time, r.reason, r.detail) for r in rows],
    )


async def _close_run(
    db: _Db,
    run_id: int,
    finished_at: str,
    status: RunStatus,
    errors_json: str,
    counts: tuple[int, int, int],
) -> None:
    setups, rejected_setups, rejected_symbols = counts
    closed = await _rowcount(
        db,
        "UPDATE analysis_runs SET finished_at = ?, status = ?, errors = ?, setups_count = ?,"
        " rejected_setups_count = ?, rejected_symbols_count = ? WHERE id = ? AND status = ?",
        (
            finished_at,
            status.value,
            errors_json,
            setups,
            rejected_setups,
            rejected_symbols,
            run_id,
            RunStatus.RUNNING.value,
        ),
    )
    if closed != 1:
        raise RunStateError(f"analysis run {run_id} was not running when it was to be closed")


async def _execute(db: _Db, sql: str, params: Sequence[Any] = ()) -> None:
    """Run one statement in a single trip to the connection's thread (no cursor is left to close after)."""
    await db.execute_fetchall(sql, params)


async def _executemany(db: _Db, sql: str, params: Iterable[Sequence[Any]]) -> None:
    await db.executemany(sql, params)


async def _fetchall(db: _Db, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


async def _scalar(db: _Db, sql: str) -> Any:
    rows = await _fetchall(db, sql)
    return rows[0][0]


async def _user_version(db: _Db) -> int:
    return int(await _scalar(db, "PRAGMA user_version"))


async def _rowcount(db: _Db, sql: str, params: Sequence[Any]) -> int:
    """Run an INSERT, UPDATE or DELETE in a single trip to the connection's thread; the rows it changed."""
    return len(list(await db.execute_fetchall(f"{sql} RETURNING 1", params)))


async def _cas_status(db: _Db, signal_id: str, expected: SignalStatus, to: SignalStatus, at: str) -> bool:
    """Move the signal from `expected` to `to` iff it is in `expected` now."""
    sql = "UPDATE signals SET status = ?, updated_at = ? WHERE signal_id = ? AND status = ?"
    return await _rowcount(db, sql, (to.value, at, signal_id, expected.value)) == 1


async def _decision_stamp(db: _Db, state_keys: Sequence[str]) -> str:
    """What an approval's checks depended on, as a text that changes when any of it does: the paper and live trades
    and the orders (counted: nothing is ever deleted from them), the latest close (its number, read off the end
    of an index), the pair controls, the baselines and the given state keys."""
    keys = [_check_text(k, "state key") for k in state_keys]
    marks = ", ".join("?" for _ in keys) or "NULL"
    rows = await _fetchall(
        db,
        "SELECT (SELECT COUNT(*) FROM trades WHERE kind <> 'shadow'),"
        " (SELECT closed_seq FROM trades WHERE closed_seq IS NOT NULL AND kind <> 'shadow'"
        " ORDER BY closed_seq DESC LIMIT 1),"
        " (SELECT COUNT(*) FROM orders), (SELECT COALESCE(MAX(id), 0) FROM pair_controls),"
        " (SELECT COALESCE(MAX(id), 0) FROM baselines),"
        " (SELECT group_concat(kv, ';') FROM"
        f" (SELECT key || '=' || value AS kv FROM bot_state WHERE key IN ({marks}) ORDER BY key))",
        keys,
    )
    return "|".join(str(v) for v in rows[0])


async def _order_may_be_placed(db: _Db, request: OrderRequest) -> bool:
    """False if the signal is unknown or already has an order; ValueError if the order is not for it."""
    signal_id = request.client_order_id
    rows = await _fetchall(
        db,
        "SELECT symbol, side, EXISTS (SELECT 1 FROM orders WHERE client_order_id = ?) FROM signals WHERE signal_id = ?",
        (signal_id, signal_id),
    )
    if not rows or rows[0][2]:
        return False
    if (rows[0]["symbol"], rows[0]["side"]) != (request.symbol, Side(request.side).value):
        raise ValueError(
            f"order {request.symbol} {request.side} does not match signal {signal_id} ({rows[0]['symbol']} "
            f"{rows[0]['side']})"
        )
    return True


async def _insert_order(db: _Db, params: tuple[str, str, str, str, str]) -> None:
    """Record the order intent of a signal (the row a restart reconciles by client order id)."""
    await _execute(
        db, "INSERT INTO orders (client_order_id, symbol, side, quantity, submitted_at) VALUES (?, ?, ?, ?, ?)", params
    )


async def _store_fill(db: _Db, signal_id: str, fill_params: tuple[str, str, str, str]) -> None:
    updated = await _rowcount(
        db,
        "UPDATE orders SET fill_price = ?, fill_quantity = ?, fees = ?, filled_at = ?"
        " WHERE client_order_id = ? AND filled_at IS NULL",
        (*fill_params, signal_id),
    )
    if updated != 1:
        raise StoreError(f"signal {signal_id} was {SignalStatus.ORDER_SUBMITTED} but has no unfilled order")


async def _insert_trade(db: _Db, params: tuple[Any, ...]) -> bool:
    """Insert the trade; False if its signal already has a trade of its kind, DuplicateTradeError if its id is used."""
    sql = f"INSERT INTO trades ({_TRADE_COLUMNS}) VALUES ({', '.join('?' * len(params))}) ON CONFLICT DO NOTHING"
    if await _rowcount(db, sql, params):
        return True
    trade_id, signal_id, kind = params[:3]
    if await _fetchall(db, "SELECT 1 FROM trades WHERE signal_id = ? AND kind = ?", (signal_id, kind)):
        return False
    raise DuplicateTradeError(f"trade id {trade_id} is already used by another trade")


async def _open_trade_entry_time(db: _Db, trade_id: str) -> datetime | None:
    """Entry time of the trade if it is open, None if it is closed; UnknownRecordError if there is none."""
    rows = await _fetchall(db, "SELECT entry_time, exit_time FROM trades WHERE trade_id = ?", (trade_id,))
    if not rows:
        raise UnknownRecordError(f"there is no trade {trade_id}")
    if rows[0]["exit_time"] is not None:
        return None
    return _decode_ts(rows[0]["entry_time"], f"trade {trade_id} entry_time")


async def _require_outbox_item(db: _Db, item_id: int) -> None:
    if not await _fetchall(db, "SELECT 1 FROM outbox WHERE id = ?", (item_id,)):
        raise UnknownRecordError(f"there is no outbox item {item_id}")
