"""SQLite store of the bot's state: the `SignalStore` and `BotStore` ports over one aiosqlite connection.

One `SqliteStore` owns one connection in autocommit mode. Every write runs in an explicit
`BEGIN IMMEDIATE ... COMMIT` (rolled back on any error), and every statement, read or write, is issued under
one asyncio.Lock: statements of two tasks share the connection's transaction state, so without the lock a
read could see another task's uncommitted rows or a write could land inside someone else's transaction.
Other processes (a plain `sqlite3` reader, a backup) read alongside through WAL.

Money and prices are stored as TEXT `str(Decimal)` and read back exactly; instants as ISO-8601 UTC TEXT
(`2025-06-12T09:40:00Z`, with `.ffffff` only when there are microseconds) read back as tz-aware UTC. Because
'.' sorts before 'Z', SQL compares and orders instants through `_ts_key`, which pads the missing fraction.

Signal lifecycle moves are compare-and-set updates (`... WHERE signal_id = ? AND status = ?`) inside
`BEGIN IMMEDIATE`: between tasks, between connections and between processes exactly one caller wins a move,
and a losing connection waits up to the busy timeout for the winner's transaction instead of failing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http import HTTPMethod
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiosqlite
from aiosqlite.context import Result

from data.redaction import Redactor
from data.sqlite.migrations import MIGRATIONS, Migration, check_sequence
from engine.controls import ControlSource, DriftAlert, PairControl, PairState
from engine.domain import (
    SIGNAL_TRANSITIONS,
    Interval,
    QualityScore,
    Rejection,
    RejectionKind,
    RunStatus,
    ScoreComponent,
    ScoredSetup,
    Setup,
    Side,
    SignalStatus,
    ensure_utc,
)
from engine.ports import DecisionChanged, ModelVersion, OutboxItem, OutboxKind, RunSummary, SignalEstimate, SignalRecord
from engine.sizing import SizingSummary
from engine.systems import Baseline, PairValidation, ScoreEdge
from engine.trading import ExitReason, Fill, OrderRequest, ShadowOrder, StopMove, Trade, TradeAction, TradeKind

__all__ = [
    "BUSY_TIMEOUT_MS",
    "ConnectionPragmas",
    "CorruptRecordError",
    "DuplicateTradeError",
    "RunStateError",
    "SchemaVersionError",
    "SqliteStore",
    "StoreClosedError",
    "StoreError",
    "UnknownRecordError",
    "UnknownRunError",
    "storage_problem",
]

BUSY_TIMEOUT_MS: Final = 5_000
WRITE_PAUSE_SECONDS: Final = 5.0  # after a failed write, further writes fail at once for this long
JOURNAL_MODE_WAL: Final = "wal"
SYNCHRONOUS_NORMAL: Final = 1

_E = TypeVar(
    "_E", Side, Interval, SignalStatus, RunStatus, RejectionKind, TradeKind, ExitReason, OutboxKind, TradeAction
)

# Moves that carry data of their own: only the method that records that data may make them.
_MOVES_BY_METHOD: Final = {SignalStatus.ORDER_SUBMITTED: "submit_order", SignalStatus.FILLED: "record_fill"}
_OFFERED: Final = frozenset({SignalStatus.PENDING, SignalStatus.APPROVED})
_ORDER_TRADE_KINDS: Final = frozenset({TradeKind.PAPER, TradeKind.LIVE})
_TRADE_COLUMNS: Final = (
    "trade_id, signal_id, kind, strategy, symbol, side, quantity, contract_size, entry_time, entry_price, stop,"
    " target, entry_fees, exit_time, exit_price, exit_reason, exit_fees, approver_id, approval_latency_s"
)
_TRANSITION_SQL: Final = (
    "UPDATE signals SET status = ?, updated_at = ?, offered_at = COALESCE(?, offered_at),"
    " decided_at = COALESCE(decided_at, ?), decided_by = COALESCE(?, decided_by), reason = COALESCE(?, reason),"
    " quantity = COALESCE(?, quantity), expires_at = COALESCE(?, expires_at) WHERE signal_id = ? AND status = ?"
)

_SET_STATE_SQL: Final = (
    "INSERT INTO bot_state (key, value, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)
ACTIVE_MODEL_KEY: Final = "learning.active_version"
_IN_CHUNK: Final = 500  # ids per `IN (...)` query, well under SQLite's bound-parameter limit
_TIMESTAMP_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")


class StoreError(Exception):
    """The store could not do what was asked; the message says why."""


def storage_problem(exc: BaseException) -> str:
    """What a storage failure means for the trader, in a few words (the disk is full, another process holds
    the database), else SQLite's own words."""
    text = str(exc).lower()
    if "disk is full" in text or "disk full" in text or "no space" in text:
        return "the disk is full"
    if "locked" in text or "busy" in text:
        return "another process holds the database locked"
    if "readonly" in text or "read-only" in text:
        return "the database is read-only"
    return str(exc).rsplit(": ", 1)[-1]


_STORAGE_FAULTS: Final = ("full", "locked", "busy", "readonly", "disk i/o", "unable to open")


def _storage_fault(exc: sqlite3.Error) -> bool:
    """Whether SQLite failed for want of room, access or the lock (not a constraint the write itself broke)."""
    return isinstance(exc, sqlite3.OperationalError) and any(w in str(exc).lower() for w in _STORAGE_FAULTS)


class SchemaVersionError(StoreError):
    """The database was written by a newer tradebot than this one; it is never downgraded."""


class StoreClosedError(StoreError):
    """The store was used after `close()`."""


class UnknownRunError(StoreError, LookupError):
    """No analysis run has the given id."""


class RunStateError(StoreError):
    """The run is not in a state that allows the operation (e.g. finishing a run twice)."""


class CorruptRecordError(StoreError):
    """A stored row cannot be turned back into domain objects."""


class UnknownRecordError(StoreError, LookupError):
    """No trade or outbox item has the given id."""


class DuplicateTradeError(StoreError):
    """The trade (or another trade of its kind for its signal) is already stored."""


@dataclass(frozen=True, slots=True)
class ConnectionPragmas:
    """The connection settings SQLite reports for the store's connection."""

    journal_mode: str
    busy_timeout_ms: int
    foreign_keys: bool
    synchronous: int


@dataclass(frozen=True, slots=True)
class _SignalRow:
    signal_id: str
    strategy: str
    symbol: str
    side: str
    timeframe: str
    bar_time: str
    entry: str
    stop: str
    targets: str
    reasons: str
    quality: float
    components: str


@dataclass(frozen=True, slots=True)
class _RejectionRow:
    kind: RejectionKind
    symbol: str
    strategy: str | None
    bar_time: str | None
    reason: str
    detail: str


class SqliteStore:
    """Persistence of analysis runs, signals and rejections in one SQLite file (implements `SignalStore`)."""

    def __init__(
        self, db: aiosqlite.Connection, path: Path, schema_version: int, redactor: Redactor | None = None
    ) -> None:
        """Wrap an open, migrated connection; use `await SqliteStore.open(path)` instead."""
        self._db: aiosqlite.Connection | None = db
        self._path = path
        self._schema_version = schema_version
        self._lock = asyncio.Lock()
        self._redactor = redactor if redactor is not None else Redactor()
        self._write_error: tuple[datetime, str] | None = None

    @classmethod
    async def open(
        cls, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS, secrets: Iterable[str] = ()
    ) -> SqliteStore:
        """Open (creating the file and its folder if needed) and migrate the database at `path`.

        Every text any statement writes passes a `Redactor` of `secrets` (and token shapes) first: no secret
        reaches the file, even inside an error text a broker echoed back.
        """
        if isinstance(busy_timeout_ms, bool) or not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms must be a non-negative integer, was {busy_timeout_ms!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
        try:
            db.row_factory = sqlite3.Row
            version = await _configure_and_migrate(db, path, busy_timeout_ms, MIGRATIONS)
        except BaseException:
            await db.close()
            raise
        return cls(db, path, version, Redactor(secrets))

    async def close(self) -> None:
        """Close the connection after any statement in progress; closing twice is harmless."""
        async with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def schema_version(self) -> int:
        """The `user_version` the database was at after opening."""
        return self._schema_version

    async def pragmas(self) -> ConnectionPragmas:
        """Report journal mode, busy timeout, foreign keys and synchronous as set on this connection."""
        async with self._read("read the connection pragmas") as db:
            return ConnectionPragmas(
                journal_mode=str(await _scalar(db, "PRAGMA journal_mode")).lower(),
                busy_timeout_ms=int(await _scalar(db, "PRAGMA busy_timeout")),
                foreign_keys=bool(await _scalar(db, "PRAGMA foreign_keys")),
                synchronous=int(await _scalar(db, "PRAGMA synchronous")),
            )

    async def start_run(self, started_at: datetime, as_of: datetime, data_source: str, symbols: Sequence[str]) -> int:
        """Record the start of a run and return its id."""
        started = _encode_ts(started_at, "started_at")
        as_of_text = _encode_ts(as_of, "as_of")
        if not isinstance(data_source, str) or not data_source.strip():
            raise ValueError(f"data_source must be a non-empty string, was {data_source!r}")
        symbols_json = _json(_string_list(symbols, "symbols"))
        async with (
            self._write("start a run") as db,
            db.execute(
                "INSERT INTO analysis_runs (started_at, as_of, data_source, symbols, status) VALUES (?, ?, ?, ?, ?)",
                (started, as_of_text, data_source, symbols_json, RunStatus.RUNNING.value),
            ) as cursor,
        ):
            run_id = cursor.lastrowid
        if run_id is None:
            raise StoreError("SQLite did not report the id of the new analysis run")
        return run_id

    async def finish_run(
        self,
        run_id: int,
        finished_at: datetime,
        setups: Sequence[ScoredSetup],
        rejections: Sequence[Rejection],
        errors: Sequence[str],
    ) -> None:
        """Store the run's setups (status NEW, idempotent by signal id) and rejections, and close the run.

        Everything happens in one transaction: on any error nothing is written and the run stays running.
        """
        _check_run_id(run_id)
        finished = _encode_ts(finished_at, "finished_at")
        signal_rows = _encode_setups(setups)
        rejection_rows = [_encode_rejection(r, i) for i, r in enumerate(_sequence(rejections, "rejections"))]
        errors_json = _json(_string_list(errors, "errors", allow_empty_items=False))
        rejected_setups = sum(1 for r in rejection_rows if r.kind is RejectionKind.SETUP)
        rejected_symbols = len(rejection_rows) - rejected_setups
        async with self._write(f"finish run {run_id}") as db:
            await _require_running(db, run_id, finished_at, "finished")
            await _insert_signals(db, run_id, signal_rows, finished)
            await _insert_rejections(db, run_id, rejection_rows)
            await _close_run(
                db,
                run_id,
                finished,
                RunStatus.FINISHED,
                errors_json,
                (len(signal_rows), rejected_setups, rejected_symbols),
            )

    async def mark_run_failed(self, run_id: int, finished_at: datetime, error: str) -> None:
        """Close a running run as failed with the error that stopped it."""
        _check_run_id(run_id)
        finished = _encode_ts(finished_at, "finished_at")
        if not isinstance(error, str) or not error.strip():
            raise ValueError(f"error must be a non-empty string describing the failure, was {error!r}")
        async with self._write(f"mark run {run_id} failed") as db:
            await _require_running(db, run_id, finished_at, "marked failed")
            await _close_run(db, run_id, finished, RunStatus.FAILED, _json([error]), (0, 0, 0))

    async def run(self, run_id: int) -> RunSummary | None:
        """Return the run with this id, or None if there is none."""
        _check_run_id(run_id)
        async with self._read(f"read run {run_id}") as db:
            rows = await _fetchall(db, "SELECT * FROM analysis_runs WHERE id = ?", (run_id,))
        return _decode_run(rows[0]) if rows else None

    async def recent_runs(self, limit: int = 20) -> list[RunSummary]:
        """Return up to `limit` runs, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, was {limit!r}")
        async with self._read("read recent runs") as db:
            rows = await _fetchall(db, "SELECT * FROM analysis_runs ORDER BY id DESC LIMIT ?", (limit,))
        return [_decode_run(row) for row in rows]

    async def setups_for_run(self, run_id: int) -> list[tuple[ScoredSetup, SignalStatus]]:
        """Return the setups the run reported, in its order, each with the signal's current status.

        A setup first stored by an earlier run comes back as that run stored it.
        """
        _check_run_id(run_id)
        async with self._read(f"read the setups of run {run_id}") as db:
            await _require_run(db, run_id)
            rows = await _fetchall(
                db,
                "SELECT s.* FROM run_signals AS rs JOIN signals AS s ON s.signal_id = rs.signal_id"
                " WHERE rs.run_id = ? ORDER BY rs.position",
                (run_id,),
            )
        return [_decode_signal(row) for row in rows]

    async def rejections_for_run(self, run_id: int) -> list[Rejection]:
        """Return the run's rejections in the order they were reported."""
        _check_run_id(run_id)
        async with self._read(f"read the rejections of run {run_id}") as db:
            await _require_run(db, run_id)
            rows = await _fetchall(db, "SELECT * FROM rejections WHERE run_id = ? ORDER BY id", (run_id,))
        return [_decode_rejection(row) for row in rows]

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
        return [_decode_signal_record(row) for row in rows]

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
        async with self._write(f"move signal {signal_id} from {expected} to {to}") as db:
            return await _rowcount(db, _TRANSITION_SQL, params) == 1

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
        async with self._write(f"approve signal {signal_id} and record its order") as db:
            if stamp is not None and await _decision_stamp(db, stamp[1]) != stamp[0]:
                raise DecisionChanged(f"what decided signal {signal_id} changed before its order was committed")
            if not await _order_may_be_placed(db, request):
                return False
            if await _rowcount(db, _TRANSITION_SQL, approve) != 1:
                return False
            if not await _cas_status(db, signal_id, SignalStatus.APPROVED, SignalStatus.ORDER_SUBMITTED, order[4]):
                raise StoreError(f"signal {signal_id} left approved inside its own transaction")
            await _insert_order(db, order)
        return True

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
        async with self._write(f"record a message of signal {signal_id}") as db:
            await _execute(
                db,
                "INSERT INTO signal_messages (signal_id, chat_id, message_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                params,
            )

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

    # --- outbox (BotStore) -----------------------------------------------------------------------------------

    async def enqueue(
        self, kind: OutboxKind, chat_id: int, payload: dict[str, Any], at: datetime, signal_id: str | None = None
    ) -> int:
        """Persist a message to send and return its id; `payload` must round-trip through JSON unchanged."""
        params = (
            _enum_arg(OutboxKind, kind, "kind").value,
            _check_int(chat_id, "chat_id"),
            _encode_payload(payload),
            None if signal_id is None else _check_text(signal_id, "signal_id"),
            _encode_ts(at, "at"),
        )
        async with (
            self._write("enqueue a message") as db,
            db.execute(
                "INSERT INTO outbox (kind, chat_id, payload, signal_id, created_at) VALUES (?, ?, ?, ?, ?)", params
            ) as cursor,
        ):
            item_id = cursor.lastrowid
        if item_id is None:
            raise StoreError("SQLite did not report the id of the new outbox item")
        return item_id

    async def due_messages(self, now: datetime, limit: int = 50) -> list[OutboxItem]:
        """Unsent items whose next attempt is due (never tried, or scheduled at or before `now`), oldest first."""
        due = _encode_ts_key(now, "now")
        _check_positive_int(limit, "limit")
        async with self._read("read the due messages") as db:
            rows = await _fetchall(
                db,
                "SELECT * FROM outbox WHERE sent_at IS NULL"
                f" AND (next_attempt_at IS NULL OR {_ts_key('next_attempt_at')} <= ?) ORDER BY id LIMIT ?",
                (due, limit),
            )
        return [_decode_outbox_item(row) for row in rows]

    async def mark_sent(self, item_id: int, at: datetime) -> None:
        """Mark the item sent; marking it again is a no-op (the first time is kept)."""
        params = (_encode_ts(at, "at"), _check_positive_int(item_id, "item_id"))
        async with self._write(f"mark outbox item {item_id} sent") as db:
            if not await _rowcount(db, "UPDATE outbox SET sent_at = ? WHERE id = ? AND sent_at IS NULL", params):
                await _require_outbox_item(db, item_id)

    async def mark_failed_attempt(self, item_id: int, next_attempt_at: datetime, error: str) -> None:
        """Count a failed send and schedule the next one (a no-op once the item was sent)."""
        if not isinstance(error, str):
            raise TypeError(f"error must be a string, was {type(error).__name__}")
        params = (_encode_ts(next_attempt_at, "next_attempt_at"), error, _check_positive_int(item_id, "item_id"))
        async with self._write(f"record a failed attempt of outbox item {item_id}") as db:
            if not await _rowcount(
                db,
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE id = ? AND sent_at IS NULL",
                params,
            ):
                await _require_outbox_item(db, item_id)

    async def outbox_size(self) -> int:
        """How many items are not sent yet."""
        async with self._read("count the unsent messages") as db:
            return int(await _scalar(db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"))

    # --- orders and trades (BotStore) ------------------------------------------------------------------------

    async def submit_order(self, signal_id: str, request: OrderRequest, at: datetime) -> bool:
        """Atomically APPROVED -> ORDER_SUBMITTED and record the order; False (nothing written) if that fails.

        The order's client_order_id must be the signal id and its symbol and side the signal's (ValueError).
        """
        params = _encode_order(signal_id, request, at)
        async with self._write(f"submit the order of signal {signal_id}") as db:
            if not await _order_may_be_placed(db, request):
                return False
            if not await _cas_status(db, signal_id, SignalStatus.APPROVED, SignalStatus.ORDER_SUBMITTED, params[4]):
                return False
            await _insert_order(db, params)
        return True

    async def record_fill(self, fill: Fill, trade: Trade) -> bool:
        """Atomically ORDER_SUBMITTED -> FILLED, store the fill and open the trade; False if already done.

        `trade` must be the open PAPER or LIVE trade of that fill (same signal, symbol, side and quantity).
        """
        fill_params = _encode_fill(fill)
        trade_params = _encode_trade(trade)
        _check_fill_opens(fill, trade)
        signal_id = fill.client_order_id
        async with self._write(f"record the fill of order {signal_id}") as db:
            filled_at = fill_params[3]
            if not await _cas_status(db, signal_id, SignalStatus.ORDER_SUBMITTED, SignalStatus.FILLED, filled_at):
                return False
            await _store_fill(db, signal_id, fill_params)
            if not await _insert_trade(db, trade_params):
                raise DuplicateTradeError(f"signal {signal_id} already has a {trade.kind} trade")
        return True

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
        async with self._write(f"open the shadow trade of signal {trade.signal_id}") as db:
            return await _insert_trade(db, params)

    async def record_external_trade(self, trade: Trade) -> None:
        """Store a closed EXTERNAL trade; its signal_id need not be a stored signal (the caller checks if it must).

        A signal has at most one external trade: reporting it again raises DuplicateTradeError.
        """
        params = _encode_trade(trade)
        if trade.kind is not TradeKind.EXTERNAL or trade.is_open:
            raise ValueError(f"trade {trade.trade_id} must be a closed {TradeKind.EXTERNAL} trade, was {trade.kind}")
        async with self._write(f"record the external trade of signal {trade.signal_id}") as db:
            if not await _insert_trade(db, params):
                raise DuplicateTradeError(f"signal {trade.signal_id} already has a reported {trade.kind} trade")

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
        async with self._write(f"close trade {trade_id}") as db:
            entry_time = await _open_trade_entry_time(db, trade_id)
            if entry_time is None:
                return False
            if at < entry_time:
                raise ValueError(f"trade {trade_id} cannot exit at {params[0]}, before its entry at {entry_time}")
            return bool(
                await _rowcount(
                    db,
                    "UPDATE trades SET exit_time = ?, exit_price = ?, exit_reason = ?, exit_fees = ?"
                    " WHERE trade_id = ? AND exit_time IS NULL",
                    params,
                )
            )

    async def open_trades(self, kinds: Collection[TradeKind] | None = None) -> list[Trade]:
        """Open trades of the given kinds (all when None), oldest entry first."""
        where, params = _kinds_filter(kinds)
        async with self._read("read the open trades") as db:
            rows = await _fetchall(
                db,
                f"SELECT * FROM trades WHERE exit_time IS NULL{where} ORDER BY {_ts_key('entry_time')}, trade_id",
                params,
            )
        return [_decode_trade(row) for row in rows]

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
        return [_decode_trade(row) for row in rows]

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
        async with self._write(f"claim a {action} of trade {trade_id}") as db:
            busy = await _fetchall(
                db,
                "SELECT 1 FROM trades t WHERE t.trade_id = ? AND (t.exit_time IS NOT NULL OR EXISTS"
                " (SELECT 1 FROM trade_actions a WHERE a.trade_id = t.trade_id AND a.status = 'requested'))",
                params[:1],
            )
            exists = await _fetchall(db, "SELECT 1 FROM trades WHERE trade_id = ?", params[:1])
            if busy or not exists:
                return None
            cursor = await db.execute(
                "INSERT INTO trade_actions (trade_id, action, status, requested_at, requested_by)"
                " VALUES (?, ?, 'requested', ?, ?)",
                (*params, *stamp),
            )
            action_id = cursor.lastrowid
        assert action_id is not None
        return action_id

    async def finish_trade_action(self, action_id: int, done: bool, at: datetime, detail: str = "") -> None:
        """Record how a claimed action ended (a failed one frees the trade for the next)."""
        params = ("done" if done else "failed", _encode_ts(at, "at"), detail, _check_int(action_id, "id"))
        async with self._write(f"finish trade action {action_id}") as db:
            await _execute(
                db,
                "UPDATE trade_actions SET status = ?, finished_at = ?, detail = ?"
                " WHERE id = ? AND status = 'requested'",
                params,
            )

    async def move_trade_stop(self, action_id: int, trade_id: str, old: Decimal, new: Decimal, at: datetime) -> bool:
        """Record the open trade's stop moved from `old` (its current stop) to `new` and finish the claimed action;
        False if the trade closed or its stop changed meanwhile. The trade's own stop stays the one it entered
        with: its risk, and so its R, is measured from that."""
        params = (_check_text(trade_id, "trade_id"),)
        async with self._write(f"move the stop of trade {trade_id}") as db:
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
        return True

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
        async with self._write("fail interrupted trade actions") as db:
            return await _rowcount(
                db,
                "UPDATE trade_actions SET status = 'failed', finished_at = ?, detail = 'interrupted by a restart'"
                " WHERE status = 'requested'",
                (_encode_ts(at, "at"),),
            )

    async def create_close_batch(self, trade_ids: Sequence[str], at: datetime, by: int) -> int:
        """Keep the positions a "close all" confirmation shows; its id, for the button."""
        params = (_json([_check_text(t, "trade_id") for t in trade_ids]), _encode_ts(at, "at"), _check_int(by, "by"))
        async with self._write("keep a close-all confirmation") as db:
            cursor = await db.execute(
                "INSERT INTO close_batches (trade_ids, created_at, created_by) VALUES (?, ?, ?)", params
            )
            batch_id = cursor.lastrowid
        assert batch_id is not None
        return batch_id

    async def use_close_batch(self, batch_id: int, at: datetime, by: int) -> list[str] | None:
        """Mark a close-all confirmation used and return the trades it showed; None if used or unknown."""
        params = (_encode_ts(at, "at"), _check_int(by, "by"), _check_int(batch_id, "id"))
        async with self._write(f"use close-all confirmation {batch_id}") as db:
            if not await _rowcount(
                db, "UPDATE close_batches SET used_at = ?, used_by = ? WHERE id = ? AND used_at IS NULL", params
            ):
                return None
            rows = await _fetchall(db, "SELECT trade_ids FROM close_batches WHERE id = ?", params[2:])
        return [str(t) for t in json.loads(rows[0][0])]

    # --- baselines (BotStore) ---------------------------------------------------------------------------------

    async def save_baseline(self, baseline: Baseline) -> int:
        """Store a validation result as the next version for its strategy x instrument; return the version."""
        for name in ("strategy", "symbol", "interval", "data_source"):
            _check_text(getattr(baseline, name), name)
        if baseline.data_to < baseline.data_from:
            raise ValueError(f"baseline data range ends {baseline.data_to} before it starts {baseline.data_from}")
        key = (baseline.strategy, baseline.symbol, baseline.interval)
        row = (
            _encode_ts(baseline.created_at, "created_at"),
            baseline.data_source,
            _encode_ts(baseline.data_from, "data_from"),
            _encode_ts(baseline.data_to, "data_to"),
            _json(baseline.params),
            int(baseline.passed),
            _json(list(baseline.reasons)),
            _json(baseline.metrics),
            _json([float(r) for r in baseline.r_multiples]),
            baseline.fingerprint,
            _json(dict(baseline.system)),
            None if baseline.oos_from is None else _encode_ts(baseline.oos_from, "oos_from"),
            None if baseline.score is None else _json(baseline.score.to_json()),
        )
        async with self._write(f"save the baseline of {baseline.strategy} on {baseline.symbol}") as db:
            rows = await _fetchall(
                db,
                "SELECT COALESCE(MAX(version), 0) FROM baselines WHERE strategy = ? AND symbol = ? AND interval = ?",
                key,
            )
            version = int(rows[0][0]) + 1
            await db.execute(
                "INSERT INTO baselines (strategy, symbol, interval, version, created_at, data_source, data_from,"
                " data_to, params, passed, reasons, metrics, r_multiples, fingerprint, system, oos_from, score)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, version, *row),
            )
        return version

    async def baselines(self) -> list[Baseline]:
        """The newest validation result of every system (fingerprint) of every strategy x instrument."""
        sql = (
            "SELECT * FROM baselines b WHERE version = (SELECT MAX(version) FROM baselines c WHERE"
            " c.strategy = b.strategy AND c.symbol = b.symbol AND c.interval = b.interval"
            " AND c.fingerprint = b.fingerprint) ORDER BY strategy, symbol, interval, version"
        )
        async with self._read("read the baselines of every system") as db:
            rows = await _fetchall(db, sql)
        return [_decode_baseline(row) for row in rows]

    async def latest_baselines(self) -> list[Baseline]:
        """The newest validation result of every strategy x instrument."""
        sql = (
            "SELECT * FROM baselines b WHERE version = (SELECT MAX(version) FROM baselines c WHERE"
            " c.strategy = b.strategy AND c.symbol = b.symbol AND c.interval = b.interval)"
            " ORDER BY strategy, symbol, interval"
        )
        async with self._read("read the latest baselines") as db:
            rows = await _fetchall(db, sql)
        return [_decode_baseline(row) for row in rows]

    # --- shadow orders (shadow mode) ---------------------------------------------------------------------------

    async def record_shadow_order(self, order: ShadowOrder) -> bool:
        """Store the request shadow mode kept back; False (the first record stands) if this order has one already."""
        if not isinstance(order, ShadowOrder):
            raise TypeError(f"order must be a ShadowOrder, was {type(order).__name__}")
        cid = order.client_order_id
        params = (
            _check_text(cid, "client_order_id"),
            _check_text(order.broker, "broker"),
            _check_text(order.symbol, "symbol"),
            Side(order.side).value,
            _encode_amount(order.quantity, f"shadow order {cid} quantity", positive=True),
            None if order.method is None else HTTPMethod(order.method).value,
            order.path,
            order.body_json,
            order.refusal,
            _encode_ts(order.created_at, "created_at"),
        )
        async with self._write(f"record the shadow order {cid}") as db:
            return bool(
                await _rowcount(
                    db,
                    "INSERT INTO shadow_orders (client_order_id, broker, symbol, side, quantity, method, path,"
                    " body_json, refusal, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (client_order_id) DO NOTHING",
                    params,
                )
            )

    async def shadow_orders(self, limit: int = 20) -> list[tuple[ShadowOrder, Fill | None]]:
        """The newest `limit` shadow orders, newest first, each with the paper fill of the same order (or None)."""
        _check_positive_int(limit, "limit")
        sql = (
            "SELECT s.*, o.fill_price, o.fill_quantity, o.fees, o.filled_at FROM shadow_orders s"
            " LEFT JOIN orders o ON o.client_order_id = s.client_order_id AND o.filled_at IS NOT NULL"
            f" ORDER BY {_ts_key('s.created_at')} DESC, s.client_order_id DESC LIMIT ?"
        )
        async with self._read("read the shadow orders") as db:
            rows = await _fetchall(db, sql, (limit,))
        return [_decode_shadow_order(row) for row in rows]

    # --- drift alerts, pair controls, learned models, signal estimates --------------------------------------------

    async def record_drift_alert(self, alert: DriftAlert) -> None:
        """Store an alert told to the chat (the cooldown reads the newest per pair, across restarts)."""
        params = (
            _check_text(alert.strategy, "strategy"),
            _check_text(alert.symbol, "symbol"),
            _check_text(alert.severity, "severity"),
            _encode_ts(alert.alerted_at, "alerted_at"),
            alert.summary,
        )
        async with self._write(f"record a drift alert for {alert.strategy} on {alert.symbol}") as db:
            await _execute(
                db,
                "INSERT INTO drift_alerts (strategy, symbol, severity, alerted_at, summary) VALUES (?, ?, ?, ?, ?)",
                params,
            )

    async def last_drift_alert(self, strategy: str, symbol: str) -> DriftAlert | None:
        """The newest alert told for this pair, or None."""
        sql = "SELECT * FROM drift_alerts WHERE strategy = ? AND symbol = ? ORDER BY id DESC LIMIT 1"
        async with self._read(f"read the last drift alert of {strategy} on {symbol}") as db:
            rows = await _fetchall(db, sql, (strategy, symbol))
        if not rows:
            return None
        row = rows[0]
        where = f"drift alert {row['id']}"
        return DriftAlert(
            row["strategy"], row["symbol"], row["severity"], _decode_ts(row["alerted_at"], where), row["summary"]
        )

    async def set_pair_control(self, control: PairControl, expected_id: int | None = None) -> PairControl | None:
        """Append a state change; with `expected_id`, only while that record is still the pair's newest."""
        if not isinstance(control, PairControl):
            raise TypeError(f"control must be a PairControl, was {type(control).__name__}")
        params = (
            _check_text(control.strategy, "strategy"),
            _check_text(control.symbol, "symbol"),
            PairState(control.state).value,
            ControlSource(control.source).value,
            _check_text(control.reason, "reason"),
            _encode_ts(control.at, "at"),
            _optional_int(control.by, "by"),
        )
        async with self._write(f"change the state of {control.strategy} on {control.symbol}") as db:
            if expected_id is not None:
                rows = await _fetchall(
                    db,
                    "SELECT MAX(id) FROM pair_controls WHERE strategy = ? AND symbol = ?",
                    (control.strategy, control.symbol),
                )
                if rows[0][0] != expected_id:
                    return None
            cursor = await db.execute(
                "INSERT INTO pair_controls (strategy, symbol, state, source, reason, at, by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                params,
            )
            control_id = cursor.lastrowid
        assert control_id is not None
        return dataclasses.replace(control, control_id=control_id)

    async def pair_controls(self) -> dict[tuple[str, str], PairControl]:
        """The newest control record of every pair that has one."""
        sql = (
            "SELECT * FROM pair_controls p WHERE id = (SELECT MAX(id) FROM pair_controls q"
            " WHERE q.strategy = p.strategy AND q.symbol = p.symbol) ORDER BY strategy, symbol"
        )
        async with self._read("read the pair controls") as db:
            rows = await _fetchall(db, sql)
        return {(row["strategy"], row["symbol"]): _decode_control(row) for row in rows}

    async def pair_control(self, control_id: int) -> PairControl | None:
        async with self._read(f"read pair control {control_id}") as db:
            rows = await _fetchall(db, "SELECT * FROM pair_controls WHERE id = ?", (_check_int(control_id, "id"),))
        return _decode_control(rows[0]) if rows else None

    async def save_model(self, created_at: datetime, summary: dict[str, Any], model: dict[str, Any]) -> int:
        """Store a learning run's output as the next version and make it the active one; return the version."""
        params = (_encode_ts(created_at, "created_at"), _encode_payload(summary), _encode_payload(model))
        async with self._write("save a learned model") as db:
            cursor = await db.execute(
                "INSERT INTO learned_models (created_at, summary, model) VALUES (?, ?, ?)", params
            )
            version = cursor.lastrowid
            assert version is not None
            await _execute(db, _SET_STATE_SQL, (ACTIVE_MODEL_KEY, str(version), _encode_ts(datetime.now(UTC), "now")))
        return version

    async def active_model(self) -> ModelVersion | None:
        """The model learning uses now, or None before the first learning run."""
        async with self._read("read the active learned model") as db:
            rows = await _fetchall(
                db,
                "SELECT m.* FROM learned_models m"
                " JOIN bot_state s ON s.key = ? AND CAST(s.value AS INTEGER) = m.version",
                (ACTIVE_MODEL_KEY,),
            )
        return _decode_model(rows[0]) if rows else None

    async def rollback_model(self) -> ModelVersion | None:
        """Make the version before the active one active; None (nothing changed) when there is none."""
        async with self._write("roll the learned model back") as db:
            active = await _fetchall(db, "SELECT value FROM bot_state WHERE key = ?", (ACTIVE_MODEL_KEY,))
            if not active:
                return None
            rows = await _fetchall(
                db,
                "SELECT * FROM learned_models WHERE version < ? ORDER BY version DESC LIMIT 1",
                (int(active[0][0]),),
            )
            if not rows:
                return None
            previous = _decode_model(rows[0])
            now = _encode_ts(datetime.now(UTC), "now")
            await _execute(db, _SET_STATE_SQL, (ACTIVE_MODEL_KEY, str(previous.version), now))
        return previous

    async def set_signal_validation(self, signal_id: str, validation: PairValidation) -> None:
        """Keep the system's validation status with a signal being offered (only while it is NEW)."""
        params = (validation.fingerprint or None, _json(validation.to_json()), _check_text(signal_id, "signal_id"))
        async with self._write(f"keep the validation of {signal_id}") as db:
            await _execute(
                db, "UPDATE signals SET fingerprint = ?, validation = ? WHERE signal_id = ? AND status = 'new'", params
            )

    async def set_signal_sizing(self, signal_id: str, sizing: SizingSummary) -> None:
        """Keep what a signal's size means in money with it (only while it is NEW)."""
        params = (_json(sizing.to_json()), _check_text(signal_id, "signal_id"))
        async with self._write(f"keep the sizing of {signal_id}") as db:
            await _execute(db, "UPDATE signals SET sizing = ? WHERE signal_id = ? AND status = 'new'", params)

    async def signal_fingerprints(self, signal_ids: Collection[str]) -> dict[str, str]:
        """The fingerprint of the system that found each signal, for the signals offered with one."""
        ids = sorted(set(signal_ids))
        out: dict[str, str] = {}
        async with self._read("read signal fingerprints") as db:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                where = f"fingerprint IS NOT NULL AND signal_id IN ({marks})"
                sql = f"SELECT signal_id, fingerprint FROM signals WHERE {where}"
                rows = await _fetchall(db, sql, chunk)
                out.update((str(r[0]), str(r[1])) for r in rows)
        return out

    async def save_estimate(self, estimate: SignalEstimate) -> None:
        """Store the win estimate shown with a signal (the first one stands)."""
        params = (
            _check_text(estimate.signal_id, "signal_id"),
            _check_int(estimate.model_version, "model_version"),
            estimate.p_win,
            _check_int(estimate.trades, "trades"),
            estimate.expected_r,
            estimate.note,
            estimate.learned_score,
        )
        async with self._write(f"save the estimate of {estimate.signal_id}") as db:
            await _execute(
                db,
                "INSERT INTO signal_estimates"
                " (signal_id, model_version, p_win, trades, expected_r, note, learned_score)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (signal_id) DO NOTHING",
                params,
            )

    async def estimates(self, signal_ids: Collection[str]) -> dict[str, SignalEstimate]:
        ids = list(signal_ids)
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        async with self._read("read signal estimates") as db:
            rows = await _fetchall(db, f"SELECT * FROM signal_estimates WHERE signal_id IN ({marks})", ids)
        return {
            row["signal_id"]: SignalEstimate(
                row["signal_id"],
                row["model_version"],
                row["p_win"],
                row["trades"],
                row["expected_r"],
                row["note"],
                row["learned_score"],
            )
            for row in rows
        }

    # --- bot state (BotStore) --------------------------------------------------------------------------------

    async def get_state(self, key: str) -> str | None:
        _check_text(key, "key")
        async with self._read(f"read state {key}") as db:
            rows = await _fetchall(db, "SELECT value FROM bot_state WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_state(self, key: str, value: str) -> None:
        """Insert or replace the value (updated_at is the wall-clock time, for people reading the file)."""
        _check_text(key, "key")
        if not isinstance(value, str):
            raise TypeError(f"state {key} value must be a string, was {type(value).__name__}")
        params = (key, value, _encode_ts(datetime.now(UTC), "updated_at"))
        async with self._write(f"set state {key}") as db:
            await _execute(db, _SET_STATE_SQL, params)

    def _require_open(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreClosedError(f"the store for {self._path} is closed")
        return self._db

    @property
    def last_write_error(self) -> tuple[datetime, str] | None:
        """When the latest write failed and why (the disk full, the database locked), until a write succeeds."""
        return self._write_error

    @asynccontextmanager
    async def _write(self, what: str) -> AsyncIterator[_Connection]:
        """Hold the lock and a write transaction for the body; SQLite errors name `what` was being done.

        After a write failed (the disk full, the database held by another process), writes fail at once for
        WRITE_PAUSE_SECONDS: each attempt would hold the store for the whole busy timeout, and every read and
        command of the bot would queue behind it.
        """
        failed = self._write_error
        if failed is not None and (datetime.now(UTC) - failed[0]).total_seconds() < WRITE_PAUSE_SECONDS:
            raise StoreError(f"could not {what} in {self._path}: {failed[1]} (writes paused for a moment)")
        async with self._lock:
            db = self._require_open()
            try:
                async with _transaction(db):
                    yield _Connection(db, self._redactor.redact)
            except sqlite3.Error as exc:
                if _storage_fault(exc):  # the disk or another process, not this write's own content
                    self._write_error = (datetime.now(UTC), storage_problem(exc))
                raise StoreError(f"could not {what} in {self._path}: {exc}") from exc
            self._write_error = None

    @asynccontextmanager
    async def _read(self, what: str) -> AsyncIterator[_Connection]:
        """Hold the lock for the body so it never sees another task's uncommitted writes."""
        async with self._lock:
            db = self._require_open()
            try:
                yield _Connection(db, self._redactor.redact)
            except sqlite3.Error as exc:
                raise StoreError(f"could not {what} in {self._path}: {exc}") from exc


class _Connection:
    """The connection as the store's statements see it: every text parameter passes the redactor first."""

    __slots__ = ("_db", "_redact")

    def __init__(self, db: aiosqlite.Connection, redact: Callable[[str], str]) -> None:
        self._db = db
        self._redact = redact

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> Result[aiosqlite.Cursor]:
        return self._db.execute(sql, self._clean(parameters))

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> Result[aiosqlite.Cursor]:
        return self._db.executemany(sql, [self._clean(p) for p in parameters])

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None) -> Iterable[sqlite3.Row]:
        return await self._db.execute_fetchall(sql, self._clean(parameters))

    def _clean(self, parameters: Iterable[Any] | None) -> tuple[Any, ...]:
        return tuple(self._redact(p) if isinstance(p, str) else p for p in parameters or ())


_Db = aiosqlite.Connection | _Connection


@asynccontextmanager
async def _transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    """Run the body inside BEGIN IMMEDIATE ... COMMIT, rolling back on any error (or cancellation)."""
    await _execute(db, "BEGIN IMMEDIATE")
    try:
        yield
        await _execute(db, "COMMIT")
    except BaseException:
        if db.in_transaction:  # some errors (e.g. SQLITE_FULL) already rolled SQLite back
            await _execute(db, "ROLLBACK")
        raise


async def _configure_and_migrate(
    db: aiosqlite.Connection, path: Path, busy_timeout_ms: int, migrations: tuple[Migration, ...]
) -> int:
    """Set the connection pragmas and bring the schema up to date; return the resulting user_version."""
    await _execute(db, f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
    await _execute(db, "PRAGMA foreign_keys = ON")
    try:
        current = await _user_version(db)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a usable SQLite database: {exc}") from exc
    latest = check_sequence(migrations)
    if current > latest:
        raise SchemaVersionError(
            f"{path} has schema version {current}, newer than the {latest} this tradebot knows; "
            "it was written by a newer release: upgrade tradebot (the database is never downgraded)"
        )
    mode = await _scalar(db, f"PRAGMA journal_mode = {JOURNAL_MODE_WAL}")
    if str(mode).lower() != JOURNAL_MODE_WAL:
        raise StoreError(f"could not switch {path} to WAL journal mode (SQLite reports {mode!r})")
    await _execute(db, "PRAGMA synchronous = NORMAL")
    for migration in migrations[current:]:
        await _apply_migration(db, path, migration)
    return await _user_version(db)


async def _apply_migration(db: aiosqlite.Connection, path: Path, migration: Migration) -> None:
    """Apply one migration and its user_version bump in one transaction (skipped if another process did)."""
    async with _transaction(db):
        current = await _user_version(db)
        if current >= migration.version:
            return
        if current != migration.version - 1:
            raise StoreError(f"{path} is at schema version {current}, cannot apply migration {migration.version}")
        # Deferred until COMMIT so a later migration may rebuild a referenced table; resets with the transaction.
        await _execute(db, "PRAGMA defer_foreign_keys = ON")
        for statement in migration.statements:
            try:
                await _execute(db, statement)
            except sqlite3.Error as exc:
                raise StoreError(f"migration {migration.version} ({migration.name}) failed on {path}: {exc}") from exc
        await _execute(db, f"PRAGMA user_version = {migration.version:d}")


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
    async with db.execute(
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
    ) as cursor:
        if cursor.rowcount != 1:
            raise RunStateError(f"analysis run {run_id} was not running when it was to be closed")


async def _execute(db: _Db, sql: str, params: Sequence[Any] = ()) -> None:
    async with db.execute(sql, params):
        pass


async def _executemany(db: _Db, sql: str, params: Iterable[Sequence[Any]]) -> None:
    async with db.executemany(sql, params):
        pass


async def _fetchall(db: _Db, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


async def _scalar(db: _Db, sql: str) -> Any:
    rows = await _fetchall(db, sql)
    return rows[0][0]


async def _user_version(db: _Db) -> int:
    return int(await _scalar(db, "PRAGMA user_version"))


def _ts_key(column: str) -> str:
    """SQL for a stored instant in fixed width (missing `.ffffff` padded), so text order is time order."""
    return f"(CASE WHEN length({column}) = 20 THEN substr({column}, 1, 19) || '.000000Z' ELSE {column} END)"


def _encode_ts_key(ts: datetime, name: str) -> str:
    """An instant in the fixed-width form `_ts_key` compares against."""
    text = _encode_ts(ts, name)
    return f"{text[:19]}.000000Z" if len(text) == 20 else text


def _check_text(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, was {value!r}")
    return value


def _optional_text(value: str | None, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, was {type(value).__name__}")
    return value


def _check_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, was {value!r}")
    return value


def _optional_int(value: int | None, name: str) -> int | None:
    return None if value is None else _check_int(value, name)


def _check_positive_int(value: int, name: str) -> int:
    if _check_int(value, name) < 1:
        raise ValueError(f"{name} must be a positive integer, was {value!r}")
    return value


def _enum_arg(enum: type[_E], value: object, name: str) -> _E:
    if not isinstance(value, str):  # every enum here is a StrEnum: members are strings too
        raise TypeError(f"{name} must be a {enum.__name__}, was {value!r}")
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(member.value for member in enum)
        raise ValueError(f"{name} must be one of {known}, was {value!r}") from None


def _encode_amount(value: Decimal, name: str, *, positive: bool) -> str:
    """A finite Decimal that is > 0 (`positive`) or >= 0, as text."""
    text = _encode_decimal(value, name)
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, was {value}")
    return text


def _check_transition(expected: SignalStatus, to: SignalStatus) -> tuple[SignalStatus, SignalStatus]:
    expected, to = _enum_arg(SignalStatus, expected, "expected"), _enum_arg(SignalStatus, to, "to")
    allowed = SIGNAL_TRANSITIONS[expected]
    if to not in allowed:
        options = ", ".join(sorted(allowed)) or "nothing (it is final)"
        raise ValueError(f"illegal signal transition {expected} -> {to}: from {expected} a signal may go to {options}")
    if to in _MOVES_BY_METHOD:
        raise ValueError(f"signal transition {expected} -> {to} is made by {_MOVES_BY_METHOD[to]}(), not transition()")
    return expected, to


def _encode_payload(payload: dict[str, Any]) -> str:
    """JSON text of a payload that reads back equal (str keys; str, int, float, bool, None, lists, dicts)."""
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, was {type(payload).__name__}")
    try:
        text = _json(payload)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"payload cannot be stored as JSON: {exc}") from exc
    if json.loads(text) != payload:  # tuples, non-str keys...
        raise ValueError(f"payload does not read back unchanged from JSON (use lists and str keys): {payload!r}")
    return text


def _encode_order(signal_id: str, request: OrderRequest, at: datetime) -> tuple[str, str, str, str, str]:
    _check_text(signal_id, "signal_id")
    if not isinstance(request, OrderRequest):
        raise TypeError(f"request must be an OrderRequest, was {type(request).__name__}")
    if request.client_order_id != signal_id:
        raise ValueError(f"order client_order_id {request.client_order_id!r} must be the signal id {signal_id!r}")
    quantity = _encode_amount(request.quantity, f"order {signal_id} quantity", positive=True)
    return (signal_id, request.symbol, Side(request.side).value, quantity, _encode_ts(at, "at"))


def _encode_fill(fill: Fill) -> tuple[str, str, str, str]:
    """(price, quantity, fees, filled_at) of a fill, validated."""
    if not isinstance(fill, Fill):
        raise TypeError(f"fill must be a Fill, was {type(fill).__name__}")
    where = f"fill {fill.client_order_id}"
    return (
        _encode_amount(fill.price, f"{where} price", positive=True),
        _encode_amount(fill.quantity, f"{where} quantity", positive=True),
        _encode_amount(fill.fees, f"{where} fees", positive=False),
        _encode_ts(fill.filled_at, f"{where} filled_at"),
    )


def _check_fill_opens(fill: Fill, trade: Trade) -> None:
    """The trade must be the open PAPER/LIVE position the fill created."""
    if trade.kind not in _ORDER_TRADE_KINDS or not trade.is_open:
        raise ValueError(f"a fill opens an open paper or live trade, not a {trade.kind} trade (open: {trade.is_open})")
    mine = (fill.client_order_id, fill.symbol, Side(fill.side), fill.quantity)
    theirs = (trade.signal_id, trade.symbol, Side(trade.side), trade.quantity)
    if mine != theirs:
        raise ValueError(f"trade {trade.trade_id} {theirs} does not match fill {mine} (signal, symbol, side, quantity)")


def _encode_trade(trade: Trade) -> tuple[Any, ...]:
    """Column values of a trade in `_TRADE_COLUMNS` order, validated."""
    if not isinstance(trade, Trade):
        raise TypeError(f"trade must be a Trade, was {type(trade).__name__}")
    where = f"trade {trade.trade_id!r}"
    latency = trade.approval_latency_s
    if latency is not None and (
        isinstance(latency, bool) or not isinstance(latency, int | float) or not 0 <= latency < float("inf")
    ):
        raise ValueError(f"{where} approval_latency_s must be a finite non-negative number, was {latency!r}")
    exit_time, exit_price, exit_reason = trade.exit_time, trade.exit_price, trade.exit_reason
    return (
        _check_text(trade.trade_id, "trade_id"),
        _check_text(trade.signal_id, f"{where} signal_id"),
        _enum_arg(TradeKind, trade.kind, f"{where} kind").value,
        _check_text(trade.strategy, f"{where} strategy"),
        _check_text(trade.symbol, f"{where} symbol"),
        _enum_arg(Side, trade.side, f"{where} side").value,
        _encode_amount(trade.quantity, f"{where} quantity", positive=True),
        _encode_amount(trade.contract_size, f"{where} contract_size", positive=True),
        _encode_ts(trade.entry_time, f"{where} entry_time"),
        _encode_amount(trade.entry_price, f"{where} entry_price", positive=True),
        _encode_amount(trade.stop, f"{where} stop", positive=True),
        _encode_amount(trade.target, f"{where} target", positive=True),
        _encode_amount(trade.entry_fees, f"{where} entry_fees", positive=False),
        None if exit_time is None else _encode_ts(exit_time, f"{where} exit_time"),
        None if exit_price is None else _encode_amount(exit_price, f"{where} exit_price", positive=True),
        None if exit_reason is None else _enum_arg(ExitReason, exit_reason, f"{where} exit_reason").value,
        _encode_amount(trade.exit_fees, f"{where} exit_fees", positive=False),
        _optional_int(trade.approver_id, f"{where} approver_id"),
        None if latency is None else float(latency),
    )


def _kinds_filter(kinds: Collection[TradeKind] | None) -> tuple[str, list[Any]]:
    """SQL (` AND kind IN (...)`, or nothing for None) and its parameters."""
    if kinds is None:
        return "", []
    if isinstance(kinds, str) or not isinstance(kinds, Collection):
        raise TypeError(f"kinds must be a collection of TradeKind or None, was {kinds!r}")
    values = sorted({_enum_arg(TradeKind, kind, "kinds item").value for kind in kinds})
    return f" AND kind IN ({', '.join('?' * len(values))})", list(values)


async def _rowcount(db: _Db, sql: str, params: Sequence[Any]) -> int:
    async with db.execute(sql, params) as cursor:
        return cursor.rowcount


def _transition_params(
    signal_id: str,
    expected: SignalStatus,
    to: SignalStatus,
    at: datetime,
    by: int | None,
    reason: str | None,
    quantity: Decimal | None,
    expires_at: datetime | None,
) -> tuple[Any, ...]:
    """Parameters of `_TRANSITION_SQL` for one checked move."""
    _check_text(signal_id, "signal_id")
    at_text = _encode_ts(at, "at")
    return (
        to.value,
        at_text,
        at_text if expected is SignalStatus.NEW and to in _OFFERED else None,
        None if to is SignalStatus.PENDING else at_text,
        _optional_int(by, "by"),
        _optional_text(reason, "reason"),
        None if quantity is None else _encode_amount(quantity, "quantity", positive=True),
        None if expires_at is None else _encode_ts(expires_at, "expires_at"),
        signal_id,
        expected.value,
    )


async def _cas_status(db: _Db, signal_id: str, expected: SignalStatus, to: SignalStatus, at: str) -> bool:
    """Move the signal from `expected` to `to` iff it is in `expected` now."""
    sql = "UPDATE signals SET status = ?, updated_at = ? WHERE signal_id = ? AND status = ?"
    return await _rowcount(db, sql, (to.value, at, signal_id, expected.value)) == 1


async def _decision_stamp(db: _Db, state_keys: Sequence[str]) -> str:
    keys = [_check_text(k, "state key") for k in state_keys]
    marks = ", ".join("?" for _ in keys) or "NULL"
    rows = await _fetchall(
        db,
        "SELECT (SELECT COUNT(*) FROM trades WHERE kind <> 'shadow'),"
        " (SELECT COUNT(*) FROM trades WHERE kind <> 'shadow' AND exit_time IS NOT NULL),"
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


def _check_run_id(run_id: int) -> None:
    if isinstance(run_id, bool) or not isinstance(run_id, int) or run_id < 1:
        raise ValueError(f"run_id must be a positive integer, was {run_id!r}")


def _sequence(items: Sequence[Any], name: str) -> Sequence[Any]:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise TypeError(f"{name} must be a sequence (list or tuple), was {type(items).__name__}")
    return items


def _string_list(items: Sequence[str], name: str, *, allow_empty_items: bool = False) -> list[str]:
    values = list(_sequence(items, name))
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{name}[{i}] must be a string, was {type(value).__name__}")
        if not allow_empty_items and not value.strip():
            raise ValueError(f"{name}[{i}] must not be empty")
    return values


def _decode_baseline(row: sqlite3.Row) -> Baseline:
    where = f"baseline {row['strategy']}/{row['symbol']} v{row['version']}"
    score = None if row["score"] is None else ScoreEdge.from_json(_load_json(row["score"], f"{where} score"))
    return Baseline(
        strategy=str(row["strategy"]),
        symbol=str(row["symbol"]),
        interval=str(row["interval"]),
        params=dict(_load_json(row["params"], f"{where} params")),
        data_source=str(row["data_source"]),
        data_from=_decode_ts(row["data_from"], f"{where} data_from"),
        data_to=_decode_ts(row["data_to"], f"{where} data_to"),
        passed=bool(row["passed"]),
        reasons=tuple(str(r) for r in _load_json(row["reasons"], f"{where} reasons")),
        metrics=dict(_load_json(row["metrics"], f"{where} metrics")),
        r_multiples=tuple(float(r) for r in _load_json(row["r_multiples"], f"{where} r_multiples")),
        created_at=_decode_ts(row["created_at"], f"{where} created_at"),
        version=int(row["version"]),
        fingerprint=str(row["fingerprint"]),
        system=dict(_load_json(row["system"], f"{where} system")),
        oos_from=_decode_optional_ts(row["oos_from"], f"{where} oos_from"),
        score=score,
    )


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _encode_ts(ts: datetime, name: str) -> str:
    """Format a UTC datetime as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`."""
    if not isinstance(ts, datetime):
        raise TypeError(f"{name} must be a datetime, was {type(ts).__name__}")
    naive = ensure_utc(ts, name).astimezone(UTC).replace(tzinfo=None)
    return naive.isoformat(timespec="microseconds" if naive.microsecond else "seconds") + "Z"


def _encode_decimal(value: Decimal, name: str) -> str:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{name} must be a finite Decimal, was {value!r}")
    return str(value)


def _encode_setups(setups: Sequence[ScoredSetup]) -> list[_SignalRow]:
    rows: list[_SignalRow] = []
    first_index: dict[str, int] = {}
    for i, item in enumerate(_sequence(setups, "setups")):
        row = _encode_setup(item, i)
        if row.signal_id in first_index:
            raise ValueError(
                f"setups[{i}] ({row.symbol} {row.strategy} {row.side} at {row.bar_time}) has the same signal id "
                f"{row.signal_id} as setups[{first_index[row.signal_id]}]; a run must report each setup once"
            )
        first_index[row.signal_id] = i
        rows.append(row)
    return rows


def _encode_setup(item: ScoredSetup, i: int) -> _SignalRow:
    if not isinstance(item, ScoredSetup):
        raise TypeError(f"setups[{i}] must be a ScoredSetup, was {type(item).__name__}")
    setup, score = item.setup, item.score
    where = f"setups[{i}] ({setup.symbol} {setup.strategy})"
    components = []
    for c in score.components:
        for field_name in ("value", "weight"):
            number = getattr(c, field_name)
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise TypeError(f"{where} component {c.name} {field_name} must be a number, was {number!r}")
        components.append({"name": c.name, "value": float(c.value), "weight": float(c.weight), "reason": c.reason})
    return _SignalRow(
        signal_id=setup.signal_id,
        strategy=setup.strategy,
        symbol=setup.symbol,
        side=Side(setup.side).value,
        timeframe=Interval(setup.timeframe).value,
        bar_time=_encode_ts(setup.bar_time, f"{where} bar_time"),
        entry=_encode_decimal(setup.entry, f"{where} entry"),
        stop=_encode_decimal(setup.stop, f"{where} stop"),
        targets=_json([_encode_decimal(t, f"{where} target") for t in setup.targets]),
        reasons=_json(_string_list(setup.reasons, f"{where} reasons", allow_empty_items=True)),
        quality=float(score.total),
        components=_json(components),
    )


def _encode_rejection(item: Rejection, i: int) -> _RejectionRow:
    if not isinstance(item, Rejection):
        raise TypeError(f"rejections[{i}] must be a Rejection, was {type(item).__name__}")
    where = f"rejections[{i}]"
    try:
        kind = RejectionKind(item.kind)
    except ValueError:
        known = ", ".join(k.value for k in RejectionKind)
        raise ValueError(f"{where} ({item.symbol}) has unknown kind {item.kind!r}; expected one of {known}") from None
    if not isinstance(item.symbol, str) or not item.symbol.strip():
        raise ValueError(f"{where} symbol must be a non-empty string, was {item.symbol!r}")
    if not isinstance(item.reason, str) or not item.reason.strip():
        raise ValueError(f"{where} ({item.symbol}) reason must be a non-empty string, was {item.reason!r}")
    if item.strategy is not None and not isinstance(item.strategy, str):
        raise TypeError(f"{where} ({item.symbol}) strategy must be a string or None, was {item.strategy!r}")
    if not isinstance(item.detail, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in item.detail.items()
    ):
        raise TypeError(f"{where} ({item.symbol}) detail must map strings to strings, was {item.detail!r}")
    return _RejectionRow(
        kind=kind,
        symbol=item.symbol,
        strategy=item.strategy,
        bar_time=None if item.bar_time is None else _encode_ts(item.bar_time, f"{where} bar_time"),
        reason=item.reason,
        detail=_json(dict(item.detail)),
    )


def _decode_ts(value: object, where: str) -> datetime:
    if not isinstance(value, str) or not _TIMESTAMP_RE.fullmatch(value):
        raise CorruptRecordError(f"{where} is not an ISO-8601 UTC timestamp: {value!r}")
    try:
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    except ValueError as exc:
        raise CorruptRecordError(f"{where} is not a valid timestamp: {value!r}") from exc


def _decode_decimal(value: object, where: str) -> Decimal:
    if not isinstance(value, str):
        raise CorruptRecordError(f"{where} must be stored as decimal text, was {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise CorruptRecordError(f"{where} is not a decimal number: {value!r}") from exc
    if not result.is_finite():
        raise CorruptRecordError(f"{where} is not a finite decimal: {value!r}")
    return result


def _decode_enum(enum: type[_E], value: object, where: str) -> _E:
    if not isinstance(value, str):
        raise CorruptRecordError(f"{where} must be stored as text, was {value!r}")
    try:
        return enum(value)
    except ValueError as exc:
        raise CorruptRecordError(f"{where} has unknown value {value!r}") from exc


def _load_json(value: object, where: str) -> Any:
    if not isinstance(value, str):
        raise CorruptRecordError(f"{where} must be JSON text, was {value!r}")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise CorruptRecordError(f"{where} is not valid JSON: {exc}") from exc


def _load_string_list(value: object, where: str) -> tuple[str, ...]:
    items = _load_json(value, where)
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise CorruptRecordError(f"{where} must be a JSON list of strings, was {value!r}")
    return tuple(items)


def _decode_run(row: sqlite3.Row) -> RunSummary:
    run_id = int(row["id"])
    where = f"analysis run {run_id}"
    finished_at = row["finished_at"]
    return RunSummary(
        run_id=run_id,
        started_at=_decode_ts(row["started_at"], f"{where} started_at"),
        finished_at=None if finished_at is None else _decode_ts(finished_at, f"{where} finished_at"),
        as_of=_decode_ts(row["as_of"], f"{where} as_of"),
        data_source=row["data_source"],
        symbols=_load_string_list(row["symbols"], f"{where} symbols"),
        setups=int(row["setups_count"]),
        rejected_setups=int(row["rejected_setups_count"]),
        rejected_symbols=int(row["rejected_symbols_count"]),
        errors=_load_string_list(row["errors"], f"{where} errors"),
        status=_decode_enum(RunStatus, row["status"], f"{where} status"),
    )


def _decode_component(item: object, where: str) -> ScoreComponent:
    if not isinstance(item, dict) or set(item) != {"name", "value", "weight", "reason"}:
        raise CorruptRecordError(f"{where} component must have name, value, weight and reason, was {item!r}")
    name, value, weight, reason = item["name"], item["value"], item["weight"], item["reason"]
    numbers_ok = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (value, weight))
    if not isinstance(name, str) or not isinstance(reason, str) or not numbers_ok:
        raise CorruptRecordError(f"{where} component has wrong field types: {item!r}")
    try:
        return ScoreComponent(name, float(value), float(weight), reason)
    except ValueError as exc:
        raise CorruptRecordError(f"{where} component {name}: {exc}") from exc


def _decode_signal(row: sqlite3.Row) -> tuple[ScoredSetup, SignalStatus]:
    signal_id = row["signal_id"]
    where = f"signal {signal_id}"
    targets = _load_json(row["targets"], f"{where} targets")
    components = _load_json(row["components"], f"{where} components")
    if not isinstance(targets, list) or not isinstance(components, list):
        raise CorruptRecordError(f"{where} targets and components must be JSON lists")
    try:
        setup = Setup(
            strategy=row["strategy"],
            symbol=row["symbol"],
            side=_decode_enum(Side, row["side"], f"{where} side"),
            entry=_decode_decimal(row["entry"], f"{where} entry"),
            stop=_decode_decimal(row["stop"], f"{where} stop"),
            targets=tuple(_decode_decimal(t, f"{where} target") for t in targets),
            bar_time=_decode_ts(row["bar_time"], f"{where} bar_time"),
            timeframe=_decode_enum(Interval, row["timeframe"], f"{where} timeframe"),
            reasons=_load_string_list(row["reasons"], f"{where} reasons"),
        )
        score = QualityScore(float(row["quality"]), tuple(_decode_component(c, where) for c in components))
    except ValueError as exc:
        raise CorruptRecordError(f"{where} does not form a valid setup: {exc}") from exc
    if setup.signal_id != signal_id:
        raise CorruptRecordError(f"{where} content hashes to signal id {setup.signal_id}, not its stored id")
    return ScoredSetup(setup, score), _decode_enum(SignalStatus, row["status"], f"{where} status")


def _decode_rejection(row: sqlite3.Row) -> Rejection:
    where = f"rejection {row['id']}"
    detail = _load_json(row["detail"], f"{where} detail")
    if not isinstance(detail, dict) or not all(isinstance(v, str) for v in detail.values()):
        raise CorruptRecordError(f"{where} detail must be a JSON object of strings, was {row['detail']!r}")
    bar_time = row["bar_time"]
    return Rejection(
        kind=_decode_enum(RejectionKind, row["kind"], f"{where} kind"),
        symbol=row["symbol"],
        reason=row["reason"],
        strategy=row["strategy"],
        bar_time=None if bar_time is None else _decode_ts(bar_time, f"{where} bar_time"),
        detail=detail,
    )


def _decode_optional_ts(value: object, where: str) -> datetime | None:
    return None if value is None else _decode_ts(value, where)


def _decode_optional_decimal(value: object, where: str) -> Decimal | None:
    return None if value is None else _decode_decimal(value, where)


def _decode_optional_int(value: object, where: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise CorruptRecordError(f"{where} must be stored as an integer, was {value!r}")
    return value


def _decode_optional_text(value: object, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise CorruptRecordError(f"{where} must be stored as text, was {value!r}")
    return value


def _decode_signal_record(row: sqlite3.Row) -> SignalRecord:
    scored, status = _decode_signal(row)
    where = f"signal {row['signal_id']}"
    return SignalRecord(
        scored=scored,
        status=status,
        run_id=int(row["run_id"]),
        created_at=_decode_ts(row["created_at"], f"{where} created_at"),
        quantity=_decode_optional_decimal(row["quantity"], f"{where} quantity"),
        offered_at=_decode_optional_ts(row["offered_at"], f"{where} offered_at"),
        expires_at=_decode_optional_ts(row["expires_at"], f"{where} expires_at"),
        decided_by=_decode_optional_int(row["decided_by"], f"{where} decided_by"),
        decided_at=_decode_optional_ts(row["decided_at"], f"{where} decided_at"),
        reason=_decode_optional_text(row["reason"], f"{where} reason"),
        validation=_decode_validation(row["validation"], f"{where} validation"),
        sizing=_decode_sizing(row["sizing"], f"{where} sizing"),
    )


def _decode_sizing(value: object, where: str) -> SizingSummary | None:
    if value is None:
        return None
    data = _load_json(value, where)
    try:
        return SizingSummary.from_json(data)
    except (KeyError, TypeError, ValueError, ArithmeticError, AssertionError) as exc:
        raise CorruptRecordError(f"{where} is not a sizing snapshot: {exc}") from exc


def _decode_validation(value: object, where: str) -> PairValidation | None:
    if value is None:
        return None
    data = _load_json(value, where)
    try:
        return PairValidation.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecordError(f"{where} is not a validation snapshot: {exc}") from exc


def _decode_outbox_item(row: sqlite3.Row) -> OutboxItem:
    where = f"outbox item {row['id']}"
    payload = _load_json(row["payload"], f"{where} payload")
    if not isinstance(payload, dict):
        raise CorruptRecordError(f"{where} payload must be a JSON object, was {row['payload']!r}")
    return OutboxItem(
        item_id=int(row["id"]),
        kind=_decode_enum(OutboxKind, row["kind"], f"{where} kind"),
        chat_id=int(row["chat_id"]),
        payload=payload,
        created_at=_decode_ts(row["created_at"], f"{where} created_at"),
        attempts=int(row["attempts"]),
        next_attempt_at=_decode_optional_ts(row["next_attempt_at"], f"{where} next_attempt_at"),
        signal_id=_decode_optional_text(row["signal_id"], f"{where} signal_id"),
        last_error=_decode_optional_text(row["last_error"], f"{where} last_error"),
    )


def _decode_fill(row: sqlite3.Row) -> Fill:
    where = f"order {row['client_order_id']}"
    try:
        return Fill(
            client_order_id=row["client_order_id"],
            symbol=row["symbol"],
            side=_decode_enum(Side, row["side"], f"{where} side"),
            quantity=_decode_decimal(row["fill_quantity"], f"{where} fill_quantity"),
            price=_decode_decimal(row["fill_price"], f"{where} fill_price"),
            fees=_decode_decimal(row["fees"], f"{where} fees"),
            filled_at=_decode_ts(row["filled_at"], f"{where} filled_at"),
        )
    except ValueError as exc:
        raise CorruptRecordError(f"{where} does not form a valid fill: {exc}") from exc


def _decode_trade(row: sqlite3.Row) -> Trade:
    where = f"trade {row['trade_id']}"
    exit_reason = row["exit_reason"]
    latency = row["approval_latency_s"]
    if latency is not None and not isinstance(latency, int | float):
        raise CorruptRecordError(f"{where} approval_latency_s must be a number, was {latency!r}")
    try:
        return Trade(
            trade_id=row["trade_id"],
            signal_id=row["signal_id"],
            kind=_decode_enum(TradeKind, row["kind"], f"{where} kind"),
            strategy=row["strategy"],
            symbol=row["symbol"],
            side=_decode_enum(Side, row["side"], f"{where} side"),
            quantity=_decode_decimal(row["quantity"], f"{where} quantity"),
            contract_size=_decode_decimal(row["contract_size"], f"{where} contract_size"),
            entry_time=_decode_ts(row["entry_time"], f"{where} entry_time"),
            entry_price=_decode_decimal(row["entry_price"], f"{where} entry_price"),
            stop=_decode_decimal(row["stop"], f"{where} stop"),
            target=_decode_decimal(row["target"], f"{where} target"),
            entry_fees=_decode_decimal(row["entry_fees"], f"{where} entry_fees"),
            exit_time=_decode_optional_ts(row["exit_time"], f"{where} exit_time"),
            exit_price=_decode_optional_decimal(row["exit_price"], f"{where} exit_price"),
            exit_reason=None if exit_reason is None else _decode_enum(ExitReason, exit_reason, f"{where} exit_reason"),
            exit_fees=_decode_decimal(row["exit_fees"], f"{where} exit_fees"),
            approver_id=_decode_optional_int(row["approver_id"], f"{where} approver_id"),
            approval_latency_s=None if latency is None else float(latency),
        )
    except ValueError as exc:
        raise CorruptRecordError(f"{where} does not form a valid trade: {exc}") from exc


def _decode_control(row: sqlite3.Row) -> PairControl:
    where = f"pair control {row['id']}"
    return PairControl(
        strategy=row["strategy"],
        symbol=row["symbol"],
        state=PairState(row["state"]),
        source=ControlSource(row["source"]),
        reason=row["reason"],
        at=_decode_ts(row["at"], where),
        by=_decode_optional_int(row["by"], where),
        control_id=int(row["id"]),
    )


def _decode_model(row: sqlite3.Row) -> ModelVersion:
    where = f"learned model v{row['version']}"
    summary, model = _load_json(row["summary"], where), _load_json(row["model"], where)
    if not isinstance(summary, dict) or not isinstance(model, dict):
        raise CorruptRecordError(f"{where}: summary and model must be JSON objects")
    return ModelVersion(int(row["version"]), _decode_ts(row["created_at"], where), summary, model)


def _decode_shadow_order(row: sqlite3.Row) -> tuple[ShadowOrder, Fill | None]:
    """A shadow_orders row joined with its order's fill columns (NULL when the paper order did not fill)."""
    cid = row["client_order_id"]
    where = f"shadow order {cid}"
    method = row["method"]
    try:
        side = _decode_enum(Side, row["side"], f"{where} side")
        order = ShadowOrder(
            client_order_id=cid,
            broker=row["broker"],
            symbol=row["symbol"],
            side=side,
            quantity=_decode_decimal(row["quantity"], f"{where} quantity"),
            created_at=_decode_ts(row["created_at"], f"{where} created_at"),
            method=None if method is None else HTTPMethod(method),
            path=_decode_optional_text(row["path"], f"{where} path"),
            body_json=_decode_optional_text(row["body_json"], f"{where} body_json"),
            refusal=_decode_optional_text(row["refusal"], f"{where} refusal"),
        )
        fill = None
        if row["filled_at"] is not None:
            fill = Fill(
                client_order_id=cid,
                symbol=order.symbol,
                side=side,
                quantity=_decode_decimal(row["fill_quantity"], f"{where} fill_quantity"),
                price=_decode_decimal(row["fill_price"], f"{where} fill_price"),
                fees=_decode_decimal(row["fees"], f"{where} fees"),
                filled_at=_decode_ts(row["filled_at"], f"{where} filled_at"),
            )
    except ValueError as exc:
        raise CorruptRecordError(f"{where} does not form a valid record: {exc}") from exc
    return order, fill
