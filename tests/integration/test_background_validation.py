"""The background validation's worker process on the shared data and a real SQLite file: what it stores, what it
says when a system cannot be validated, and that stopping it keeps what it finished."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bot.config import Settings, load_settings
from bot.ops.clock import WallClock
from bot.services.background_validation import BackgroundValidation
from bot.services.configure import system_book, traded_systems
from bot.services.validate import GateJob, gate_jobs
from bot.telegram.notifier import Notifier
from data.sqlite.store import SqliteStore
from engine.ports import FixedClock
from engine.systems import SystemSpec, ValidationStatus
from tests.support import require_market_dir

AS_OF = datetime(2025, 12, 1, tzinfo=UTC)


def settings_over(folder: Path, symbols: Sequence[str]) -> Settings:
    """Default settings trading `symbols` on a copy of their shared CSV files in `folder`."""
    for symbol in symbols:
        shutil.copy(require_market_dir() / f"{symbol}_1h.csv", folder / f"{symbol}_1h.csv")
    base = load_settings({})
    watchlist = [w.model_dump() for w in base.watchlist if w.symbol in {"EURUSD", "XAUUSD"}]
    return load_settings({}, data_source=f"csv:{folder}", db_path=folder / "bot.db", watchlist=watchlist)


def runner(settings: Settings, store: SqliteStore, worker: Sequence[str] | None = None) -> BackgroundValidation:
    systems = system_book(settings)
    traded = {t.spec.pair: t for t in traded_systems(settings)}

    def jobs_for(specs: Sequence[SystemSpec], end: datetime) -> list[GateJob]:
        return gate_jobs(settings, [traded[s.pair] for s in specs], data_source=settings.data_source, end=end)

    notifier = Notifier(store, (1,), {}, WallClock())
    extra = {} if worker is None else {"worker": worker}
    return BackgroundValidation(systems, store, notifier, FixedClock(AS_OF), jobs_for, settings.db_path, **extra)


async def test_a_system_without_data_is_reported_and_the_others_are_stored(tmp_path: Path) -> None:
    settings = settings_over(tmp_path, ["XAUUSD"])  # EURUSD's file is missing
    async with await SqliteStore.open(settings.db_path) as store:
        validation = runner(settings, store)
        assert await validation.start_if_needed()
        await validation.wait()
        p = validation.progress
        assert (p.total, p.done, p.errors, p.running) == (4, 4, 2, False)
        stored = {(b.strategy, b.symbol) for b in await store.baselines()}
        assert stored == {("trend_pullback", "XAUUSD"), ("pattern_reversal", "XAUUSD")}
        assert all(b.data_to <= AS_OF and b.created_at == AS_OF for b in await store.baselines())
        [told] = [i.payload["text"] for i in await store.due_messages(AS_OF.replace(year=2100))]
        assert "of 4 systems passed" in str(told) and "2 could not be validated" in str(told)
        assert validation.systems.validation("trend_pullback", "EURUSD", AS_OF).status is ValidationStatus.UNVALIDATED
        # Only the systems still without a baseline of their own are taken up again.
        assert await validation.start_if_needed()
        assert validation.progress.total == 2
        await validation.stop()


async def test_stopping_keeps_the_baselines_already_made_and_the_next_run_does_the_rest(tmp_path: Path) -> None:
    settings = settings_over(tmp_path, ["EURUSD", "XAUUSD"])
    async with await SqliteStore.open(settings.db_path) as store:
        validation = runner(settings, store)
        assert await validation.start_if_needed()
        while validation.progress.done < 1:
            await asyncio.sleep(0.01)
        await validation.stop()
        made = len(await store.baselines())
        assert 1 <= made <= 4 and not validation.running
        if made < 4:
            assert await validation.start_if_needed()
            assert validation.progress.total == 4 - made
            await validation.wait()
        assert len(await store.baselines()) == 4
        assert not await validation.start_if_needed()  # every system has a current baseline of its own


NOISY_WORKER = """
import json, sys
sys.stdin.buffer.read()
for _ in range(300):
    sys.stderr.write("a library warning " + "x" * 1000 + "\\n")
print("a library printed this")
print(json.dumps({"system": "trend_pullback XAUUSD 1h", "passed": True, "reasons": []}))
"""


async def test_a_worker_that_talks_on_stderr_and_stdout_neither_blocks_nor_breaks_the_progress(tmp_path: Path) -> None:
    settings = settings_over(tmp_path, ["XAUUSD"])
    async with await SqliteStore.open(settings.db_path) as store:
        validation = runner(settings, store, worker=(sys.executable, "-c", NOISY_WORKER))
        assert await validation.start_if_needed()
        try:
            await asyncio.wait_for(validation.wait(), 30)  # 300 kB on stderr: more than a pipe holds
        finally:
            await validation.stop()
        p = validation.progress
        assert (p.done, p.passed, p.errors, p.running) == (1, 1, 0, False)
        [told] = [i.payload["text"] for i in await store.due_messages(AS_OF.replace(year=2100))]
        assert str(told).startswith("✅ Validation finished: 1 of 4 systems passed the pre-deploy gate: trend_pullback")
