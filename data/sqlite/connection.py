"""The store's connection: pragmas, migrations, the lock, transactions and redaction of what is written."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from data.redaction import Redactor
from data.sqlite.errors import SchemaVersionError, StoreClosedError, StoreError, _storage_fault, storage_problem
from data.sqlite.migrations import MIGRATIONS, Migration, check_sequence
from data.sqlite.queries import InThread, _Connection, _execute, _scalar, _user_version
from data.sqlite.thread import SqliteThread, finish

BUSY_TIMEOUT_MS: Final = 5_000

MIN_SQLITE: Final = (3, 35, 0)  # RETURNING: a statement and the rows it changed in one trip to the connection

JOURNAL_MODE_WAL: Final = "wal"

SYNCHRONOUS_NORMAL: Final = 1


@dataclass(frozen=True, slots=True)
class ConnectionPragmas:
    """The connection settings SQLite reports for the store's connection."""

    journal_mode: str
    busy_timeout_ms: int
    foreign_keys: bool
    synchronous: int


T = TypeVar("T")
_Redact = Callable[[str], str]
_Body = Callable[[InThread], Coroutine[Any, Any, T]]


def _roll_back(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # some errors (e.g. SQLITE_FULL) already rolled SQLite back
        conn.execute("ROLLBACK")


class AbandonedError(Exception):
    """The caller of a transaction was cancelled before its COMMIT: it is rolled back instead."""


def _in_one_transaction(
    conn: sqlite3.Connection, body: _Body[T], redact: _Redact, abandoned: threading.Event | None = None
) -> T:
    """BEGIN IMMEDIATE, the body's statements and COMMIT, all here in the connection's thread (rolled back on any
    error, and when `abandoned` is set by then: a cancelled caller's transaction never commits behind its back)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = finish(body(InThread(conn, redact)))
        if abandoned is not None and abandoned.is_set():
            raise AbandonedError("the caller was cancelled before the commit")
        conn.execute("COMMIT")
    except BaseException:
        _roll_back(conn)
        raise
    return result


async def _configure_and_migrate(
    db: SqliteThread, path: Path, busy_timeout_ms: int, migrations: tuple[Migration, ...]
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


async def _apply_migration(db: SqliteThread, path: Path, migration: Migration) -> None:
    """Apply one migration and its user_version bump in one transaction (skipped if another process did)."""

    async def migrate(conn: InThread) -> None:
        current = await _user_version(conn)
        if current >= migration.version:
            return
        if current != migration.version - 1:
            raise StoreError(f"{path} is at schema version {current}, cannot apply migration {migration.version}")
        # Deferred until COMMIT so a later migration may rebuild a referenced table; resets with the transaction.
        await _execute(conn, "PRAGMA defer_foreign_keys = ON")
        for statement in migration.statements:
            try:
                await _execute(conn, statement)
            except sqlite3.Error as exc:
                raise StoreError(f"migration {migration.version} ({migration.name}) failed on {path}: {exc}") from exc
        await _execute(conn, f"PRAGMA user_version = {migration.version:d}")

    await db.run(lambda conn: _in_one_transaction(conn, migrate, _as_written))


def _as_written(text: str) -> str:
    return text


class StoreBase:
    """One SQLite connection, its lock and its transactions: what every part of the store builds on."""

    def __init__(
        self,
        db: SqliteThread,
        path: Path,
        schema_version: int,
        redactor: Redactor | None = None,
        now: Callable[[], datetime] | None = None,
        write_pause_s: float = BUSY_TIMEOUT_MS / 1000,
    ) -> None:
        """Wrap an open, migrated connection; use `await SqliteStore.open(path)` instead."""
        self._now = now or _utc_now  # the clock of the stamps the store writes itself (updated_at, errors)
        self._write_pause_s = write_pause_s
        self._write_failed_at = 0.0
        self._db: SqliteThread | None = db
        self._path = path
        self._schema_version = schema_version
        self._lock = asyncio.Lock()
        self._redactor = redactor if redactor is not None else Redactor()
        self._write_error: tuple[datetime, str] | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpointing = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        secrets: Iterable[str] = (),
        now: Callable[[], datetime] | None = None,
        autocheckpoint: bool = True,
    ) -> Self:
        """Open (creating the file and its folder if needed) and migrate the database at `path`.

        Every text any statement writes passes a `Redactor` of `secrets` (and token shapes) first: no secret
        reaches the file, even inside an error text a broker echoed back. With `autocheckpoint` off, a commit never
        copies the write-ahead log into the database file itself (SQLite's default does it in the commit that
        fills 1,000 pages: milliseconds of I/O inside that commit, a click's); the owner then calls `checkpoint`
        regularly.
        """
        if isinstance(busy_timeout_ms, bool) or not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms must be a non-negative integer, was {busy_timeout_ms!r}")
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old: tradebot needs {'.'.join(map(str, MIN_SQLITE))} or newer "
                "(RETURNING); upgrade the system's libsqlite3 or use a Python built against a newer one"
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await SqliteThread.open(path, busy_timeout_ms / 1000)
        try:
            version = await _configure_and_migrate(db, path, busy_timeout_ms, MIGRATIONS)
            if not autocheckpoint:
                await _execute(db, "PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            await db.close()
            raise
        return cls(db, path, version, Redactor(secrets), now, write_pause_s=busy_timeout_ms / 1000)

    async def close(self) -> None:
        """Close the connection after any statement in progress; closing twice is harmless."""
        async with self._checkpointing:
            if self._checkpointer is not None:
                checkpointer, self._checkpointer = self._checkpointer, None
                checkpointer.close()
        async with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()

    async def checkpoint(self) -> tuple[int, int]:
        """Copy the write-ahead log into the database file as far as no reader needs it (a passive checkpoint,
        which neither waits for nor blocks a writer), on a connection of its own in a thread, so the store's
        statements never wait behind it; the log's pages and how many of them are in the file now."""
        self._require_open()
        async with self._checkpointing:
            try:
                row = await asyncio.to_thread(self._checkpoint_now)
            except sqlite3.Error as exc:
                raise StoreError(f"could not checkpoint {self._path}: {exc}") from exc
        return int(row[1]), int(row[2])

    def _checkpoint_now(self) -> tuple[int, int, int]:
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        return self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

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

    def mask(self, secret: str) -> None:
        """Mask one more secret (learnt at run time) in every text written from now on."""
        self._redactor = self._redactor.with_secrets([secret])

    def _require_open(self) -> SqliteThread:
        if self._db is None:
            raise StoreClosedError(f"the store for {self._path} is closed")
        return self._db

    @property
    def last_write_error(self) -> tuple[datetime, str] | None:
        """When the latest write failed and why (the disk full, the database locked), until a write succeeds."""
        return self._write_error

    async def _transact(self, what: str, body: _Body[T]) -> T:
        """Run `body` as one write transaction in ONE trip to the connection's thread, under the lock; SQLite errors
        name `what` was being done.

        `body` awaits the store's statements and nothing else (`InThread` runs each at once): it runs in the
        connection's thread, to its end, after BEGIN IMMEDIATE and before COMMIT (ROLLBACK on any error, the
        caller's own exceptions included). A click's writes cross once instead of once per statement, and SQLite's
        write lock is held only while they run.
        """
        self._refuse_while_writes_fail(what)
        async with self._lock:
            db = self._require_open()
            redact = self._redactor.redact  # read once the lock is held: a secret masked meanwhile is masked here
            try:
                abandoned = threading.Event()
                result = await db.run(
                    lambda conn: _in_one_transaction(conn, body, redact, abandoned), on_cancel=abandoned.set
                )
            except sqlite3.Error as exc:
                raise self._write_failed(what, exc) from exc
            self._write_error = None
        return result

    def _refuse_while_writes_fail(self, what: str) -> None:
        """After a write failed (the disk full, the database held by another process), writes fail at once for as
        long as the busy timeout: each attempt would hold the store for the whole busy timeout, and every read and
        command of the bot would queue behind it."""
        failed = self._write_error
        if failed is not None and time.monotonic() - self._write_failed_at < self._write_pause_s:
            raise StoreError(f"could not {what} in {self._path}: {failed[1]} (writes paused for a moment)")

    def _write_failed(self, what: str, exc: sqlite3.Error) -> StoreError:
        if _storage_fault(exc):  # the disk or another process, not this write's own content
            self._write_error = (self._now(), storage_problem(exc))
            self._write_failed_at = time.monotonic()  # the pause is real time, whatever the bot clock
        return StoreError(f"could not {what} in {self._path}: {exc}")

    @asynccontextmanager
    async def _read(self, what: str) -> AsyncIterator[_Connection]:
        """Hold the lock for the body so it never sees another task's uncommitted writes."""
        async with self._lock:
            db = self._require_open()
            try:
                yield _Connection(db, self._redactor.redact)
            except sqlite3.Error as exc:
                raise StoreError(f"could not {what} in {self._path}: {exc}") from exc


def _utc_now() -> datetime:
    """Wall-clock UTC: the store's clock when none is passed in (the CLI's one-off commands)."""
    return datetime.now(UTC)
