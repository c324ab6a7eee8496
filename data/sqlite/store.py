"""SQLite store of the bot's state: the `SignalStore` and `BotStore` ports over one SQLite connection.

One `SqliteStore` owns one connection in autocommit mode, in a thread of its own (`thread.SqliteThread`). Every
write runs in an explicit `BEGIN IMMEDIATE ... COMMIT` (rolled back on any error), the whole transaction in one
trip to that thread (`StoreBase._transact`), and every statement, read or write, is issued under
one asyncio.Lock: statements of two tasks share the connection's transaction state, so without the lock a
read could see another task's uncommitted rows or a write could land inside someone else's transaction.
Other processes (a plain `sqlite3` reader, a backup) read alongside through WAL.

Money and prices are stored as TEXT `str(Decimal)` and read back exactly; instants as ISO-8601 UTC TEXT
(`2025-06-12T09:40:00Z`, with `.ffffff` only when there are microseconds) read back as tz-aware UTC. Because
'.' sorts before 'Z', SQL compares and orders instants through `_ts_key`, which pads the missing fraction.

Signal lifecycle moves are compare-and-set updates (`... WHERE signal_id = ? AND status = ?`) inside
`BEGIN IMMEDIATE`: between tasks, between connections and between processes exactly one caller wins a move,
and a losing connection waits up to the busy timeout for the winner's transaction instead of failing.

The store is one class over one connection, written in one module per aggregate: runs (`runs`), signals
(`signals`), the outbox (`outbox`), orders, trades and the trader's actions (`trades`), baselines and shadow
orders (`baselines`), drift alerts, controls and models (`learning`), key-value state (`state`), option
spreads and their leg fills (`spreads`); the connection
in `connection`, the codecs in `codecs`, shared statements in `queries`.
"""

from __future__ import annotations

from data.sqlite.audit import AuditTrail
from data.sqlite.baselines import BaselineBook
from data.sqlite.connection import BUSY_TIMEOUT_MS, ConnectionPragmas
from data.sqlite.errors import (
    CorruptRecordError,
    DuplicateTradeError,
    RunStateError,
    SchemaVersionError,
    StoreClosedError,
    StoreError,
    UnknownRecordError,
    UnknownRunError,
    storage_problem,
)
from data.sqlite.learning import LearningRecords
from data.sqlite.outbox import Outbox
from data.sqlite.runs import RunLog
from data.sqlite.signals import SignalBook
from data.sqlite.spreads import SpreadLedger
from data.sqlite.state import KeyValueState
from data.sqlite.trades import TradeLedger

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


class SqliteStore(
    AuditTrail, RunLog, SignalBook, Outbox, TradeLedger, BaselineBook, LearningRecords, KeyValueState, SpreadLedger
):
    """Persistence of the bot's state in one SQLite file (implements `SignalStore` and `BotStore`)."""
