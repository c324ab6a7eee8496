"""A job due while the event loop was busy runs late instead of being dropped.

APScheduler drops a job more than a second late by default; for the bot's `run_once` chain of scheduled analyses
that ended the schedule for good (each run arms the next), and a late first heartbeat left `tradebot health`
saying "not running" for a minute. The bot's own job queue (`build_application`) runs late jobs once.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import Application

from bot.config import load_settings
from bot.ops.clock import BotClock
from bot.services.scheduler import ScheduleGroup, Scheduler
from bot.telegram.app import build_application
from engine.calendars import get_calendar

BLOCKED_SECONDS = 1.6  # longer than APScheduler's default grace of one second


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Application[Any, Any, Any, Any, Any, Any]:
    """The bot's application as `tradebot run` builds it (its job queue not started)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:late-jobs")
    return build_application(load_settings())


async def test_a_scheduled_run_due_while_the_loop_was_blocked_runs_late_and_the_schedule_goes_on(
    app: Application[Any, Any, Any, Any, Any, Any],
) -> None:
    jobs = app.job_queue
    assert jobs is not None
    clock = BotClock(datetime(2025, 6, 14, 11, 59, 58, tzinfo=UTC), speed=120.0)  # a bot minute is half a real second
    group = ScheduleGroup("crypto-1m", "* * * * *", "UTC", ("BTCUSDT",), timedelta(minutes=1), timedelta(0))
    runs: list[datetime] = []

    async def run(_: ScheduleGroup, symbols: list[str]) -> None:
        assert symbols == ["BTCUSDT"]
        runs.append(clock.now())

    scheduler = Scheduler([group], {"BTCUSDT": get_calendar("CRYPTO")}, clock, run)
    await jobs.start()
    try:
        scheduler.start(jobs)  # first fire at 12:00 bot time: 2 bot seconds, 1/60 s of real time
        time.sleep(BLOCKED_SECONDS)  # the loop is busy past the fire time (a long computation, a paused machine)
        deadline = time.monotonic() + 10
        while len(runs) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await jobs.stop()
    assert len(runs) >= 3, f"the schedule stopped after {len(runs)} run(s)"
    assert runs[0] >= datetime(2025, 6, 14, 12, 1, tzinfo=UTC)  # the 12:00 run ran, late
    assert runs == sorted(runs) and scheduler.next_runs["crypto-1m"] > runs[-1]  # and the next one is armed


async def test_a_heartbeat_due_while_the_loop_was_blocked_beats_late_and_missed_beats_run_once(
    app: Application[Any, Any, Any, Any, Any, Any],
) -> None:
    jobs = app.job_queue
    assert jobs is not None
    heartbeats: list[float] = []
    ticks: list[float] = []

    async def heartbeat(_: object) -> None:
        heartbeats.append(time.monotonic())

    async def tick(_: object) -> None:
        ticks.append(time.monotonic())

    await jobs.start()
    try:
        jobs.run_repeating(heartbeat, interval=60, first=0.1, name="heartbeat")  # the bot's first beat
        jobs.run_repeating(tick, interval=0.7, first=0.1, name="tick")
        blocked_at = time.monotonic()
        time.sleep(BLOCKED_SECONDS)  # the first beat and three ticks fall due meanwhile
        await asyncio.sleep(0.3)  # the next tick is due 0.6 s after the block
        ticks_caught_up = len(ticks)
        await asyncio.sleep(1.0)
    finally:
        await jobs.stop()
    assert len(heartbeats) == 1 and heartbeats[0] - blocked_at >= BLOCKED_SECONDS  # late, not a minute later
    assert ticks_caught_up == 1, f"the missed ticks ran {ticks_caught_up} times (once expected)"
    assert len(ticks) >= 2  # and it ticks on after
