"""Is the bot healthy? Database writable, runs on schedule, the bot alive with its broker's circuit, Telegram up.

`tradebot health` runs these checks from outside the bot (exit 0 healthy, 1 not); `/health` runs them inside.
The running bot writes a heartbeat record to the database every minute; outside checks read it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from html import escape
from pathlib import Path

import httpx

from bot.config import Settings
from bot.services.scheduler import ScheduleGroup, last_due_run
from data.http import tls_context
from data.redaction import Redactor
from data.sqlite.store import storage_problem
from engine.calendars import SessionCalendar
from engine.ports import RunSummary

HEARTBEAT_KEY = "health.heartbeat"
DEFAULT_TELEGRAM_BASE_URL = "https://api.telegram.org/bot"  # python-telegram-bot's default; the token follows
RUN_LOOKBACK = timedelta(days=5)  # covers a weekend and a holiday: runs due further back are not looked for
DB_TIMEOUT_SECONDS = 2.0  # a normal write holds the lock for milliseconds
MIN_FREE_BYTES = 50 * 2**20  # below this on the database's disk, writes (and backups) are about to fail


class CheckName(StrEnum):
    DATABASE = "database"
    RUNS = "runs"
    BOT = "bot"
    BROKER = "broker"
    TELEGRAM = "telegram"
    SESSION = "session"  # a broker's daily login (Kite): missing while its market is open is unhealthy


@dataclass(frozen=True)
class Check:
    """One health check's verdict with what it saw."""

    name: CheckName
    ok: bool
    detail: str


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def text(self) -> str:
        """Plain text, one line per check."""
        head = "healthy" if self.ok else "UNHEALTHY"
        lines = [f"{'ok  ' if c.ok else 'FAIL'} {c.name.value:<9} {c.detail}" for c in self.checks]
        return "\n".join([head, *lines])

    def html(self) -> str:
        """Chat HTML, one line per check."""
        head = "✅ <b>Healthy</b>" if self.ok else "🚨 <b>Unhealthy</b>"
        lines = [f"{'✅' if c.ok else '❌'} {c.name.value}: {escape(c.detail)}" for c in self.checks]
        return "\n".join([head, *lines])

    def as_json(self) -> str:
        return json.dumps(
            {"ok": self.ok, "checks": [{"name": c.name.value, "ok": c.ok, "detail": c.detail} for c in self.checks]},
            indent=2,
        )


@dataclass(frozen=True)
class HeartbeatRecord:
    """What the running bot writes every heartbeat: when (wall clock, UTC), who, and its broker's circuit."""

    at: datetime
    bot_time: datetime
    pid: int
    broker: str
    circuit: str | None  # None: no circuit breaker (paper broker)
    pending: int

    def encode(self) -> str:
        data = asdict(self)
        data["at"], data["bot_time"] = self.at.isoformat(), self.bot_time.isoformat()
        return json.dumps(data)

    @classmethod
    def decode(cls, text: str) -> HeartbeatRecord:
        data = json.loads(text)
        return cls(
            at=datetime.fromisoformat(data["at"]),
            bot_time=datetime.fromisoformat(data["bot_time"]),
            pid=int(data["pid"]),
            broker=str(data["broker"]),
            circuit=None if data.get("circuit") is None else str(data["circuit"]),
            pending=int(data.get("pending", 0)),
        )


def check_database_file(path: Path) -> Check:
    """The database opens, passes a quick check and takes the write lock (nothing is written)."""
    if not path.exists():
        return Check(CheckName.DATABASE, False, f"no database at {path}")
    try:
        db = sqlite3.connect(path, timeout=DB_TIMEOUT_SECONDS, isolation_level=None)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                return Check(CheckName.DATABASE, False, f"{path}: quick_check says {verdict}")
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
            version = db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return Check(CheckName.DATABASE, False, f"{path}: not writable: {storage_problem(exc)} ({exc})")
    free = shutil.disk_usage(path.parent).free
    if free < MIN_FREE_BYTES:
        return Check(CheckName.DATABASE, False, f"{path}: only {free // 2**20} MB free on its disk: free some space")
    return Check(CheckName.DATABASE, True, f"{path} writable (schema v{version}, {free // 2**20:,} MB free)")


def with_write_error(check: Check, failed: tuple[datetime, str] | None) -> Check:
    """The database check, failed when the bot's own latest write failed (and no write has succeeded since)."""
    if failed is None or not check.ok:
        return check
    at, why = failed
    return Check(CheckName.DATABASE, False, f"the bot's last write failed at {at:%H:%M:%S}Z: {why}")


def check_runs(
    last: RunSummary | None,
    groups: Sequence[ScheduleGroup],
    calendars: Mapping[str, SessionCalendar],
    now: datetime,
    grace: timedelta,
) -> Check:
    """The latest run started at or after the latest scheduled run that was due (`grace` ago or earlier)."""
    due = last_due_run(groups, calendars, now - grace, RUN_LOOKBACK)
    seen = "no run yet" if last is None else f"last run #{last.run_id} at {last.started_at:%Y-%m-%d %H:%M}Z"
    if due is None:
        return Check(CheckName.RUNS, True, f"{seen}; none was due (markets closed)")
    fire, group = due
    if last is None or last.started_at < fire - timedelta(seconds=1):
        return Check(CheckName.RUNS, False, f"{seen}; {group} was due at {fire:%Y-%m-%d %H:%M}Z")
    age = now - last.started_at
    return Check(CheckName.RUNS, True, f"{seen} ({_age(age)} ago)")


def check_heartbeat(
    record: HeartbeatRecord | None, now: datetime, max_age: timedelta, holder: int | bool | None = True
) -> list[Check]:
    """The bot is alive (it holds the database lock and beat recently), and its broker's circuit is not open.

    `holder`: the pid holding the database lock, None when nobody holds it (the bot is dead, however recent its
    last heartbeat), True when not asked (inside the bot itself).
    """
    if record is None:
        return [
            Check(CheckName.BOT, False, "no heartbeat: the bot is not running (or has never run)"),
            Check(CheckName.BROKER, False, "unknown: the bot is not running"),
        ]
    age = now - record.at
    if holder is None:
        why = f"not running: no process holds the database lock (pid {record.pid} last beat {_age(age)} ago)"
        return [Check(CheckName.BOT, False, why), Check(CheckName.BROKER, False, "unknown: the bot is not running")]
    alive = age <= max_age
    bot = Check(
        CheckName.BOT,
        alive,
        f"pid {record.pid}, last heartbeat {_age(age)} ago"
        + ("" if alive else f" (more than {_age(max_age)}: stopped or its event loop is blocked)"),
    )
    if record.circuit is None:
        broker = Check(CheckName.BROKER, True, record.broker)
    else:
        broker = Check(CheckName.BROKER, record.circuit != "open", f"{record.broker}: circuit {record.circuit}")
    return [bot, broker]


async def check_telegram(base_url: str | None, token: str, timeout: float, redactor: Redactor) -> Check:
    """Telegram's Bot API answers getMe for our token."""
    if not token:
        return Check(CheckName.TELEGRAM, False, "TELEGRAM_BOT_TOKEN is not set")
    url = f"{base_url or DEFAULT_TELEGRAM_BASE_URL}{token}/getMe"
    try:
        async with httpx.AsyncClient(timeout=timeout, verify=tls_context()) as client:
            response = await client.get(url)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    except (httpx.HTTPError, ValueError) as exc:
        return Check(CheckName.TELEGRAM, False, redactor.redact(f"unreachable: {type(exc).__name__}: {exc}"))
    if response.status_code != httpx.codes.OK or not body.get("ok"):
        why = body.get("description") or response.reason_phrase
        return Check(CheckName.TELEGRAM, False, redactor.redact(f"getMe answered {response.status_code}: {why}"))
    return Check(CheckName.TELEGRAM, True, f"reachable as @{body.get('result', {}).get('username', '?')}")


def _age(delta: timedelta) -> str:
    seconds = int(max(delta.total_seconds(), 0))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


async def health_report(
    settings: Settings,
    redactor: Redactor,
    database: Check,
    last: RunSummary | None,
    schedule: tuple[Sequence[ScheduleGroup], Mapping[str, SessionCalendar]],
    record: HeartbeatRecord | None,
    *,
    now: datetime,
    run_time: datetime,
    holder: int | bool | None = True,
) -> HealthReport:
    """Every check from what was read: `now` is the wall clock (heartbeats), `run_time` the clock of the runs."""
    config = settings.health
    token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else ""
    groups, calendars = schedule
    grace = timedelta(minutes=config.run_grace_minutes)
    # Walking five days of fire times is a few hundred ms of Python: in a thread, so the bot's loop (its clicks)
    # runs on while `/health` looks.
    runs = await asyncio.to_thread(check_runs, last, groups, calendars, run_time, grace)
    return HealthReport(
        (
            database,
            runs,
            *check_heartbeat(record, now, timedelta(seconds=config.heartbeat_max_age_seconds), holder),
            await check_telegram(settings.telegram_api_base_url, token, config.telegram_timeout_seconds, redactor),
        )
    )
