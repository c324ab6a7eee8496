"""SQLite store of analysis runs, signals and rejections: the `SignalStore` port over one aiosqlite connection.

One `SqliteStore` owns one connection in autocommit mode. Every write runs in an explicit
`BEGIN IMMEDIATE ... COMMIT` (rolled back on any error), and every statement, read or write, is issued under
one asyncio.Lock: statements of two tasks share the connection's transaction state, so without the lock a
read could see another task's uncommitted rows or a write could land inside someone else's transaction.
Other processes (a plain `sqlite3` reader, a backup) read alongside through WAL.

Money and prices are stored as TEXT `str(Decimal)` and read back exactly; instants as ISO-8601 UTC TEXT
(`2025-06-12T09:40:00Z`, with `.ffffff` only when there are microseconds) read back as tz-aware UTC.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiosqlite

from data.migrations import MIGRATIONS, Migration, check_sequence
from engine.domain import (
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
from engine.ports import RunSummary

__all__ = [
    "BUSY_TIMEOUT_MS",
    "ConnectionPragmas",
    "CorruptRecordError",
    "RunStateError",
    "SchemaVersionError",
    "SqliteStore",
    "StoreClosedError",
    "StoreError",
    "UnknownRunError",
]

BUSY_TIMEOUT_MS: Final = 5_000
JOURNAL_MODE_WAL: Final = "wal"
SYNCHRONOUS_NORMAL: Final = 1

_E = TypeVar("_E", Side, Interval, SignalStatus, RunStatus, RejectionKind)

_TIMESTAMP_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")


class StoreError(Exception):
    """The store could not do what was asked; the message says why."""


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

    def __init__(self, db: aiosqlite.Connection, path: Path, schema_version: int) -> None:
        """Wrap an open, migrated connection; use `await SqliteStore.open(path)` instead."""
        self._db: aiosqlite.Connection | None = db
        self._path = path
        self._schema_version = schema_version
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> SqliteStore:
        """Open (creating the file and its folder if needed) and migrate the database at `path`."""
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
        return cls(db, path, version)

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

    def _require_open(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreClosedError(f"the store for {self._path} is closed")
        return self._db

    @asynccontextmanager
    async def _write(self, what: str) -> AsyncIterator[aiosqlite.Connection]:
        """Hold the lock and a write transaction for the body; SQLite errors name `what` was being done."""
        async with self._lock:
            db = self._require_open()
            try:
                async with _transaction(db):
                    yield db
            except sqlite3.Error as exc:
                raise StoreError(f"could not {what} in {self._path}: {exc}") from exc

    @asynccontextmanager
    async def _read(self, what: str) -> AsyncIterator[aiosqlite.Connection]:
        """Hold the lock for the body so it never sees another task's uncommitted writes."""
        async with self._lock:
            db = self._require_open()
            try:
                yield db
            except sqlite3.Error as exc:
                raise StoreError(f"could not {what} in {self._path}: {exc}") from exc


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


async def _require_run(db: aiosqlite.Connection, run_id: int) -> sqlite3.Row:
    rows = await _fetchall(db, "SELECT id, status, started_at FROM analysis_runs WHERE id = ?", (run_id,))
    if not rows:
        raise UnknownRunError(f"there is no analysis run {run_id}")
    return rows[0]


async def _require_running(db: aiosqlite.Connection, run_id: int, finished_at: datetime, action: str) -> None:
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


async def _insert_signals(db: aiosqlite.Connection, run_id: int, rows: Sequence[_SignalRow], created_at: str) -> None:
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


async def _insert_rejections(db: aiosqlite.Connection, run_id: int, rows: Sequence[_RejectionRow]) -> None:
    await _executemany(
        db,
        "INSERT INTO rejections (run_id, kind, symbol, strategy, bar_time, reason, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(run_id, r.kind.value, r.symbol, r.strategy, r.bar_time, r.reason, r.detail) for r in rows],
    )


async def _close_run(
    db: aiosqlite.Connection,
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


async def _execute(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> None:
    async with db.execute(sql, params):
        pass


async def _executemany(db: aiosqlite.Connection, sql: str, params: Iterable[Sequence[Any]]) -> None:
    async with db.executemany(sql, params):
        pass


async def _fetchall(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


async def _scalar(db: aiosqlite.Connection, sql: str) -> Any:
    rows = await _fetchall(db, sql)
    return rows[0][0]


async def _user_version(db: aiosqlite.Connection) -> int:
    return int(await _scalar(db, "PRAGMA user_version"))


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
