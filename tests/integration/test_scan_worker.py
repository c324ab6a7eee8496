"""The scan's CPU work in the bot's worker process: the same outcomes as here, and a worker that dies costs nothing."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bot.bootstrap import open_runtime
from bot.config import Settings, load_settings
from bot.ops.clock import BotClock
from bot.ops.database import open_store
from bot.ops.worker import WorkerFailed, WorkerProcess
from bot.services.configure import bar_rules, kept_bars, watchlist
from bot.services.desk import OutcomeKind
from bot.services.scan import ScanReport, ScanService, SymbolOutcome, evaluate_known
from data.market.csv_provider import CsvProvider
from engine.domain import SignalStatus
from engine.trading import Trade, TradeKind
from tests.e2e.test_bot import ManualMonotonic
from tests.support import require_market_dir, worker_outlives_kill_9

AT = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)  # GBPUSD and XAUUSD trend_pullback longs


@pytest.fixture
async def worker() -> AsyncIterator[WorkerProcess]:
    process = WorkerProcess()
    yield process
    process.close()


def scan_service(tmp_path: Path, worker: WorkerProcess | None, kept_bars: int | None = None) -> ScanService:
    market = require_market_dir()
    settings = load_settings({}, data_source=f"csv:{market}", db_path=tmp_path / "bot.db")
    items = watchlist(settings)
    return ScanService(
        CsvProvider(market),
        None,
        items,
        settings.engine_config(),
        bar_rules(settings),
        BotClock(AT),
        worker,
        kept_bars=kept_bars,
    )


def same(a: ScanReport, b: ScanReport) -> None:
    assert a.outcomes == b.outcomes and len(a.setups) >= 2
    for mine, theirs in zip(a.outcomes, b.outcomes, strict=True):
        assert (mine.bars is None) == (theirs.bars is None)
        if mine.bars is not None and theirs.bars is not None:
            assert np.array_equal(mine.bars.close, theirs.bars.close) and np.array_equal(
                mine.bars.time, theirs.bars.time
            )


def _computed_here(*_: object) -> SymbolOutcome:
    raise AssertionError("computed in the bot's process, not the worker's")


async def test_a_scan_in_the_worker_finds_what_a_scan_here_finds(tmp_path: Path, worker: WorkerProcess) -> None:
    here = scan_service(tmp_path, None)
    expected = await here.scan(AT)
    assert await worker.warm("bot.services.scan") and worker.ready
    there = scan_service(tmp_path, worker)
    there.evaluate_bars = _computed_here  # type: ignore[method-assign]
    same(await there.scan(AT), expected)
    here.close()
    there.close()


async def test_the_worker_keeps_the_libraries_it_was_forked_with_out_of_full_collections(worker: WorkerProcess) -> None:
    assert await worker.warm("bot.services.scan")
    assert await worker.call(10.0, gc.get_freeze_count) > 10_000  # pandas, TA-Lib, the engine: never walked again


async def test_a_run_keeps_the_tail_of_a_flat_symbol_and_all_bars_of_one_with_a_setup_or_asked_whole(
    tmp_path: Path, worker: WorkerProcess
) -> None:
    full = await scan_service(tmp_path, None).scan(AT)
    assert await worker.warm("bot.services.scan")
    scan = scan_service(tmp_path, worker, kept_bars=101)
    scan.evaluate_bars = _computed_here  # type: ignore[method-assign]
    trimmed = await scan.scan(AT, whole={"EURUSD"})
    assert trimmed.outcomes == full.outcomes  # the same setups, rejections and notes
    with_setups = {s.setup.symbol for s in full.setups}
    assert {"GBPUSD", "XAUUSD"} <= with_setups and "EURUSD" not in with_setups
    for symbol, bars in trimmed.bars.items():
        everything = full.bars[symbol]
        kept = len(everything) if symbol in with_setups | {"EURUSD"} else min(101, len(everything))
        assert len(bars) == kept, symbol
        assert np.array_equal(bars.time, everything.time[-kept:]) and np.array_equal(
            bars.close, everything.close[-kept:]
        )
    assert len(trimmed.bars["EURUSD"]) > 1000 and len(trimmed.bars["AAPL"]) == 101
    scan.close()


async def test_the_running_bot_keeps_whole_the_bars_of_a_symbol_it_holds_and_the_tail_of_the_rest(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        {}, data_source=f"csv:{require_market_dir()}", db_path=tmp_path / "bot.db", TELEGRAM_ALLOWED_USERS="42"
    )
    mono = ManualMonotonic()
    async with open_runtime(settings, BotClock(AT, 1.0, monotonic=mono)) as runtime:
        _, decisions = await runtime.analyse()
        [gbpusd] = [d.signal_id for d in decisions if d.symbol == "GBPUSD" and d.status is SignalStatus.PENDING]
        assert (await runtime.desk.approve(gbpusd, 42)).kind is OutcomeKind.DONE
        mono.t += timedelta(hours=1).total_seconds()  # the next bar: no setup anywhere
        report, _ = await runtime.analyse()
    assert report.setups == () and "GBPUSD" in {t.symbol for t in await _open(settings)}
    assert len(report.bars["GBPUSD"]) >= 2000  # the monitor replays the position from its entry
    assert {len(b) for s, b in report.bars.items() if s != "GBPUSD"} == {kept_bars(settings)} == {101}


async def _open(settings: Settings) -> list[Trade]:
    async with await open_store(settings) as store:
        return await store.open_trades([TradeKind.PAPER])


async def test_each_watchlist_item_goes_to_a_worker_once_and_again_to_its_replacement(
    tmp_path: Path, worker: WorkerProcess
) -> None:
    expected = await scan_service(tmp_path, None).scan(AT)
    assert await worker.warm("bot.services.scan")
    scan = scan_service(tmp_path, worker)
    scan.evaluate_bars = _computed_here  # type: ignore[method-assign]
    sent: list[Any] = []
    call = worker.call

    async def spy(deadline: float, fn: Any, *args: Any) -> Any:
        if fn is evaluate_known:
            sent.append(args[1])  # evaluate_known(key, item or None, ...)
        return await call(deadline, fn, *args)

    worker.call = spy  # type: ignore[method-assign]
    same(await scan.scan(AT), expected)
    assert len(sent) == len(scan.watchlist) and all(item is not None for item in sent)
    sent.clear()
    same(await scan.scan(AT), expected)
    assert len(sent) == len(scan.watchlist) and all(item is None for item in sent)  # the worker has them all

    pid = worker.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerFailed):
        await worker.call(60, os.getpid)
    assert await worker.warm("bot.services.scan") and worker.pid() != pid
    sent.clear()
    same(await scan.scan(AT), expected)  # a new worker process: every item is sent to it again
    assert len(sent) == len(scan.watchlist) and all(item is not None for item in sent)
    scan.close()


async def test_a_worker_that_lost_an_item_is_sent_it_again(tmp_path: Path, worker: WorkerProcess) -> None:
    expected = await scan_service(tmp_path, None).scan(AT)
    assert await worker.warm("bot.services.scan")
    scan = scan_service(tmp_path, worker)
    scan.evaluate_bars = _computed_here  # type: ignore[method-assign]
    same(await scan.scan(AT), expected)
    await worker.call(60, _forget_items)  # as a worker replaced under the same process id would be
    same(await scan.scan(AT), expected)
    scan.close()


def _forget_items() -> None:
    from bot.services import scan  # noqa: PLC0415 - in the worker process

    scan._KNOWN_ITEMS.clear()


async def test_a_recycled_worker_finishes_what_it_was_given_and_a_fresh_one_takes_the_next(
    worker: WorkerProcess,
) -> None:
    assert await worker.warm("bot.services.scan")
    first = worker.pid()
    given = asyncio.create_task(worker.call(30, _pid_after, 0.5))
    await asyncio.sleep(0.2)  # it is running there
    await worker.recycle()  # returns once the new one is ready; the task goes on in the old one
    assert worker.ready and worker.pid() not in (None, first)
    assert await given == first  # finished where it started
    assert await worker.call(30, os.getpid) == worker.pid()


async def test_a_recycle_cancelled_midway_keeps_the_worker_it_had(worker: WorkerProcess) -> None:
    assert await worker.warm("bot.services.scan")
    first = worker.pid()
    recycling = asyncio.create_task(worker.recycle())
    await asyncio.sleep(0)  # it runs to its first wait: the new worker is being started
    recycling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await recycling
    assert worker.ready and await worker.call(30, os.getpid) == first


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


async def test_a_run_waits_for_a_starting_worker_rather_than_computing_here(
    tmp_path: Path, worker: WorkerProcess
) -> None:
    # Computing here would load TA-Lib and a run's indicators into the bot for good; the worker starts in seconds.
    expected = await scan_service(tmp_path, None).scan(AT)
    scan = scan_service(tmp_path, worker)
    scan.evaluate_bars = _computed_here  # type: ignore[method-assign]
    assert not worker.ready
    same(await scan.scan(AT), expected)
    assert worker.ready
    scan.close()


async def test_a_cancelled_wait_for_a_starting_worker_leaves_it_starting(worker: WorkerProcess) -> None:
    waiting = asyncio.create_task(worker.prepare("bot.services.scan"))
    await asyncio.sleep(0)  # its start is under way (it cannot have finished: that takes a process)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for _ in range(600):  # nothing starts it again: the start that was under way finishes
        if worker.ready:
            break
        await asyncio.sleep(0.05)
    assert worker.ready


async def test_a_worker_killed_mid_scan_costs_nothing(
    tmp_path: Path, worker: WorkerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    expected = await scan_service(tmp_path, None).scan(AT)
    assert await worker.warm("bot.services.scan")
    pid = worker.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    scan = scan_service(tmp_path, worker)
    with caplog.at_level(logging.WARNING, logger="bot.services.scan"):
        same(await scan.scan(AT), expected)  # every symbol: computed here when the worker was gone
    assert "the scan worker failed on" in caplog.text and "computed in the bot" in caplog.text
    assert not worker.ready
    assert await worker.warm("bot.services.scan") and worker.pid() not in (None, pid)  # a new one
    scan.close()


CHILD = """
import asyncio, sys
from bot.ops.worker import WorkerFailed, WorkerProcess
from bot.services.desk import OutcomeKind
async def main():
    w = WorkerProcess()
    assert await w.warm("bot.services.scan")
    print(w.pid(), flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


STARTING = """
import asyncio, time
from bot.ops.worker import WorkerProcess
async def main():
    gaps, last = [], time.perf_counter()
    async def tick():
        nonlocal last
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    assert await WorkerProcess().warm("bot.services.scan")
    took = time.perf_counter() - started
    ticker.cancel()
    print(f"{took:.3f} {max(gaps):.3f}")
asyncio.run(main())
"""


def test_the_event_loop_runs_on_while_a_cold_worker_starts() -> None:
    # A fresh interpreter: its fork server starts with the first worker and imports the scan's and the charts'
    # libraries (about a second); the loop must not wait for that, as a click would.
    done = subprocess.run([sys.executable, "-c", STARTING], capture_output=True, text=True, timeout=120, check=True)
    took, longest_gap = map(float, done.stdout.split())
    assert took > 0.2 and longest_gap < took / 3, (took, longest_gap)


def test_the_worker_dies_with_the_bot_even_on_kill_9() -> None:
    assert not worker_outlives_kill_9([sys.executable, "-c", CHILD])


async def test_a_worker_that_cannot_start_is_said_once_and_the_bot_computes(
    tmp_path: Path, worker: WorkerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.ops.worker"):
        assert not await worker.warm("no_such_module_here")
    assert not worker.ready
    assert "the worker process did not start (ModuleNotFoundError" in caplog.text
    scan = scan_service(tmp_path, None)
    same(await scan_service(tmp_path, worker).scan(AT), await scan.scan(AT))
    scan.close()


async def test_a_failure_seen_late_does_not_abandon_the_worker_that_replaced_it(worker: WorkerProcess) -> None:
    # A call past its deadline abandons the worker; another call queued on that worker fails a moment later, when a
    # new worker has already taken over: that late failure must leave the new one alone.
    assert await worker.warm("os")
    first = worker.pid()
    late = asyncio.create_task(worker.call(1.0, time.sleep, 5))
    queued = asyncio.create_task(worker.call(30, time.sleep, 5))
    with pytest.raises(WorkerFailed, match="no answer within 1 s"):
        await late
    replacement = asyncio.create_task(worker.call(30, os.getpid))  # starts the new worker before `queued` fails
    with pytest.raises(WorkerFailed, match="the worker process died"):
        await queued
    assert await replacement not in (None, first)
    assert worker.pid() == await replacement and await worker.call(30, os.getpid) == await replacement


class UnpicklableFrames(CsvProvider):
    """The CSV provider, its frames carrying a lambda that pickle refuses (as an odd provider's might)."""

    def fetch(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        frame = super().fetch(*args, **kwargs).copy()
        frame.attrs["made_by"] = lambda: "a provider"
        return frame


async def test_a_task_the_worker_cannot_take_is_computed_here(
    tmp_path: Path, worker: WorkerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    expected = await scan_service(tmp_path, None).scan(AT)
    assert await worker.warm("bot.services.scan")
    scan = scan_service(tmp_path, worker)
    scan.provider = UnpicklableFrames(require_market_dir())
    with caplog.at_level(logging.WARNING, logger="bot.services.scan"):
        report = await scan.scan(AT)
    assert "the scan worker failed on" in caplog.text and "computed in the bot" in caplog.text
    same(report, expected)
    assert worker.ready  # the worker itself is fine
    scan.close()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps (Linux)")
async def test_a_new_or_replaced_worker_starts_with_the_scan_and_chart_libraries_loaded(worker: WorkerProcess) -> None:
    # Forked from a server that imported them once: a replaced worker does not import pandas, TA-Lib and
    # matplotlib again (seconds on a small box) before its first task.
    for _ in range(2):
        pid = await worker.call(60, os.getpid)  # the first task: nothing imported for it
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "talib" in maps and "ft2font" in maps and "pandas" in maps
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerFailed, match="died"):
            await worker.call(60, time.sleep, 5)
