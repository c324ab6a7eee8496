"""`tradebot health`: every check, from outside the bot."""

from __future__ import annotations

import asyncio
from datetime import datetime

from bot.config import Settings
from bot.ops.database import open_store
from bot.ops.health import HEARTBEAT_KEY, HealthReport, HeartbeatRecord, check_database_file, health_report
from bot.services.configure import watchlist
from bot.services.scheduler import build_groups
from data.backup import is_locked
from data.redaction import Redactor
from engine.ports import RunSummary


async def outside_health(settings: Settings, redactor: Redactor, now: datetime) -> HealthReport:
    """Every check, from outside the bot (`tradebot health`): reads the database the bot writes."""
    database = await asyncio.to_thread(check_database_file, settings.db_path)
    last: RunSummary | None = None
    record: HeartbeatRecord | None = None
    if database.ok:
        async with await open_store(settings) as store:
            runs = await store.recent_runs(1)
            last = runs[0] if runs else None
            raw = await store.get_state(HEARTBEAT_KEY)
            record = HeartbeatRecord.decode(raw) if raw else None
    items = watchlist(settings)
    calendars = {w.instrument.symbol: w.calendar for w in items}
    groups = build_groups(settings.bot.schedules, [w.instrument for w in items], calendars)
    holder = await asyncio.to_thread(is_locked, settings.db_path)
    schedule = (groups, calendars)
    return await health_report(
        settings, redactor, database, last, schedule, record, now=now, run_time=now, holder=holder
    )
