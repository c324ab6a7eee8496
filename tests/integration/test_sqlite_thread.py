"""The store's connection thread over a real SQLite file: one trip per call, errors as raised, a clean close."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from data.sqlite.thread import ConnectionClosedError, SqliteThread, finish


async def test_every_call_runs_in_the_connections_own_thread_in_the_order_queued(tmp_path: Path) -> None:
    db = await SqliteThread.open(tmp_path / "t.db", timeout_s=1)
    try:
        await db.execute_fetchall("CREATE TABLE t (n INTEGER)")
        threads = await asyncio.gather(*(db.run(lambda _: threading.get_ident()) for _ in range(5)))
        assert len(set(threads)) == 1 and threads[0] != threading.get_ident()
        await asyncio.gather(*(db.insert("INSERT INTO t (n) VALUES (?)", (n,)) for n in range(50)))
        assert [tuple(r) for r in await db.execute_fetchall("SELECT n FROM t ORDER BY rowid")] == [
            (n,) for n in range(50)
        ]
        await db.executemany("INSERT INTO t (n) VALUES (?)", [(n,) for n in range(3)])
        assert await db.insert("INSERT INTO t (n) VALUES (7)") == 54  # the rowid of the row added
    finally:
        await db.close()


async def test_an_error_reaches_the_caller_as_raised_and_the_thread_goes_on(tmp_path: Path) -> None:
    db = await SqliteThread.open(tmp_path / "t.db", timeout_s=1)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await db.execute_fetchall("SELECT * FROM missing")
        with pytest.raises(ZeroDivisionError):
            await db.run(lambda _: 1 // 0)
        assert [tuple(r) for r in await db.execute_fetchall("SELECT 1")] == [(1,)]
    finally:
        await db.close()


async def test_a_closed_connection_refuses_calls_and_closing_twice_is_harmless(tmp_path: Path) -> None:
    db = await SqliteThread.open(tmp_path / "t.db", timeout_s=1)
    await db.close()
    await db.close()
    with pytest.raises(ConnectionClosedError, match="is closed"):
        await db.execute_fetchall("SELECT 1")


async def test_a_file_that_cannot_be_opened_fails_the_open_and_leaves_no_thread(tmp_path: Path) -> None:
    before = threading.active_count()
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        await SqliteThread.open(tmp_path / "no such folder" / "t.db", timeout_s=1)
    for _ in range(100):  # the thread ends once it has taken the stop
        if threading.active_count() == before:
            break
        await asyncio.sleep(0.01)
    assert threading.active_count() == before


async def test_a_cancelled_caller_is_told_at_once_and_released_only_when_the_connection_is_idle(
    tmp_path: Path,
) -> None:
    db = await SqliteThread.open(tmp_path / "t.db", timeout_s=1)
    inside, release, told = threading.Event(), threading.Event(), threading.Event()

    def slow(_: sqlite3.Connection) -> str:
        inside.set()
        release.wait(timeout=10)
        return "done"

    try:
        call = asyncio.create_task(db.run(slow, on_cancel=told.set))
        assert await asyncio.to_thread(inside.wait, 5)
        call.cancel()
        await asyncio.sleep(0.01)
        assert told.is_set() and not call.done()  # still waiting for the thread to leave `slow`
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        await db.close()


def test_finish_runs_a_coroutine_that_never_suspends_and_refuses_one_that_does() -> None:
    async def at_once() -> int:
        return 42

    async def waits() -> None:
        await asyncio.sleep(0)

    assert finish(at_once()) == 42
    with pytest.raises(RuntimeError, match="waited for something"):
        finish(waits())
