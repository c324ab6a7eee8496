"""One SQLite connection owned by one thread: each call is one trip from the event loop to that thread and back.

SQLite blocks (a busy database waits up to the busy timeout), so no statement runs on the event loop. A trip costs
a queue hand-off, a thread wake-up and a loop wake-up; under a busy event loop the thread also waits for the GIL.
`run` therefore takes a whole function of the connection: a transaction of several statements can cross once
(`StoreBase._transact`) instead of once per statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class ConnectionClosedError(sqlite3.ProgrammingError):
    """A call on a connection that was closed."""


class SqliteThread:
    """A `sqlite3.Connection` opened, used and closed by a thread of its own; calls queue in order."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        """Start nothing yet; use `await SqliteThread.open(path, timeout_s)`."""
        self._path = path
        self._timeout_s = timeout_s
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"sqlite {path.name}", daemon=True)

    @classmethod
    async def open(cls, path: Path, timeout_s: float) -> SqliteThread:
        """Connect to `path` in a new thread (autocommit: the store issues BEGIN and COMMIT itself; rows as
        `sqlite3.Row`)."""
        self = cls(path, timeout_s)
        self._thread.start()
        try:
            await self._call(self._connect)
        except BaseException:
            self._stop()
            raise
        return self

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._timeout_s)
        conn.row_factory = sqlite3.Row
        self._conn = conn

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, on_cancel: Callable[[], None] | None = None) -> T:
        """`fn(connection)` in the connection's thread, in one trip.

        A cancelled caller cannot stop `fn` midway; `on_cancel` is called at once (to tell `fn`, e.g. to roll back
        instead of committing), then the call waits for `fn` to end and raises CancelledError: whoever holds the
        store's lock keeps it until the connection is idle again.
        """
        if self._closed:
            raise ConnectionClosedError(f"the connection to {self._path} is closed")
        return await self._call(lambda: fn(self._require()), on_cancel)

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Every row of one statement, in one trip."""
        return await self.run(lambda conn: conn.execute(sql, parameters).fetchall())

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        """One statement over many parameter rows, in one trip."""
        rows = list(parameters)
        await self.run(lambda conn: conn.executemany(sql, rows).close())

    async def insert(self, sql: str, parameters: Sequence[Any] = ()) -> int | None:
        """Run an INSERT in one trip; the rowid of the row it added."""
        return await self.run(lambda conn: lastrowid(conn.execute(sql, parameters)))

    async def close(self) -> None:
        """Close the connection once every call queued before has run; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._call(self._disconnect)
        finally:
            self._stop()
            await asyncio.to_thread(self._thread.join)

    def _disconnect(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConnectionClosedError(f"the connection to {self._path} is closed")
        return self._conn

    async def _call(self, fn: Callable[[], T], on_cancel: Callable[[], None] | None = None) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, future, loop))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if on_cancel is not None:
                on_cancel()
            with contextlib.suppress(BaseException):
                await asyncio.shield(future)  # the thread is still in `fn`: leave only once the connection is idle
            raise

    def _stop(self) -> None:
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future, loop = job
            try:
                result = fn()
            except BaseException as exc:
                _reply(loop, future, exc, failed=True)
            else:
                _reply(loop, future, result, failed=False)


def lastrowid(cursor: sqlite3.Cursor) -> int | None:
    """The rowid an INSERT's cursor added, the cursor closed."""
    try:
        return cursor.lastrowid
    finally:
        cursor.close()


def _reply(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any, *, failed: bool) -> None:
    def settle() -> None:
        if future.done():
            return
        if failed:
            future.set_exception(value)
        else:
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(settle)


def finish(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, here and now (a store body over `InThread`, whose
    statements run at once); RuntimeError if it tries to wait for something."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a one-trip store body waited for something other than its own statements")
