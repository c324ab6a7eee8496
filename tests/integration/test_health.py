"""Health checks: the database, runs against the schedule, the bot's heartbeat and circuit, Telegram's getMe."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import bot.ops.health as health
from bot.ops.health import (
    Check,
    CheckName,
    HealthReport,
    HeartbeatRecord,
    check_database_file,
    check_heartbeat,
    check_runs,
    check_telegram,
    with_write_error,
)
from bot.services.scheduler import ScheduleGroup, build_groups, last_due_run, open_symbols
from data.market.calendars import market_calendar
from data.redaction import REDACTED, Redactor
from data.sqlite.store import SqliteStore
from engine.catalog import default_instrument
from engine.ports import RunSummary
from tests.fakes.telegram_server import FakeTelegram

TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"
TUESDAY_1030 = datetime(2025, 6, 10, 10, 30, tzinfo=UTC)
SATURDAY_NOON = datetime(2025, 6, 14, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=15)


def fx_hourly() -> tuple[list[ScheduleGroup], dict[str, object]]:
    eurusd = default_instrument("EURUSD")
    calendars = {"EURUSD": market_calendar(eurusd.calendar)}
    return build_groups((), [eurusd], calendars), calendars


def run(started: datetime, run_id: int = 7) -> RunSummary:
    return RunSummary(run_id, started, started + timedelta(seconds=3), started, "csv", ("EURUSD",), 0, 0, 0)


async def test_a_real_database_is_writable_and_a_missing_or_corrupt_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    assert not check_database_file(path).ok
    async with await SqliteStore.open(path) as store:
        await store.set_state("k", "v")
    good = check_database_file(path)
    assert good.ok and "writable" in good.detail and good.name is CheckName.DATABASE
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database" * 100)
    verdict = check_database_file(broken)
    assert not verdict.ok and "not writable" in verdict.detail


async def test_a_database_locked_by_a_writer_is_reported_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bot.db"
    async with await SqliteStore.open(path):
        pass
    monkeypatch.setattr(health, "DB_TIMEOUT_SECONDS", 0.2)  # wait 0.2 s for the writer, not 5 s
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        verdict = check_database_file(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not verdict.ok and "locked" in verdict.detail


def test_the_latest_due_run_follows_the_market_calendar() -> None:
    groups, calendars = fx_hourly()
    due = last_due_run(groups, calendars, TUESDAY_1030 - GRACE, timedelta(days=5))
    assert due == (datetime(2025, 6, 10, 10, 0, 20, tzinfo=UTC), "fx-1h")
    # FX closes Friday 17:00 New York (21:00 UTC in June): the last run due on Saturday is the one after the
    # 20:00 bar, at 21:00:20.
    weekend = last_due_run(groups, calendars, SATURDAY_NOON, timedelta(days=5))
    assert weekend == (datetime(2025, 6, 13, 21, 0, 20, tzinfo=UTC), "fx-1h")


def test_the_latest_due_run_is_the_last_fire_with_an_open_market_over_holidays_and_weekends() -> None:
    symbols = ("EURUSD", "RELIANCE", "AAPL")
    instruments = [default_instrument(s) for s in symbols]
    calendars = {i.symbol: market_calendar(i.calendar) for i in instruments}
    groups = build_groups((), instruments, calendars)
    lookback = timedelta(days=3)
    until = datetime(2025, 12, 22, 0, 7, tzinfo=UTC)  # through Christmas and New Year, every 31 h 7 min
    while until < datetime(2026, 1, 6, tzinfo=UTC):
        expected: tuple[datetime, str] | None = None
        for group in groups:  # every fire of the window, forwards, keeping the last with a market open
            fire = group.next_fire(until - lookback)
            while fire <= until:
                if open_symbols(group, calendars, fire) and (expected is None or fire > expected[0]):
                    expected = (fire, group.name)
                fire = group.next_fire(fire)
        assert last_due_run(groups, calendars, until, lookback) == expected, until
        until += timedelta(hours=31, minutes=7)


def test_runs_are_healthy_when_the_last_due_run_happened_and_not_when_one_was_missed() -> None:
    groups, calendars = fx_hourly()
    ok = check_runs(run(datetime(2025, 6, 10, 10, 0, 20, tzinfo=UTC)), groups, calendars, TUESDAY_1030, GRACE)
    assert ok.ok and "last run #7" in ok.detail
    # At 10:10 the 10:00:20 run is still within its grace: the 09:00 run is enough.
    early = check_runs(
        run(datetime(2025, 6, 10, 9, 0, 20, tzinfo=UTC)), groups, calendars, TUESDAY_1030 - timedelta(minutes=20), GRACE
    )
    assert early.ok
    missed = check_runs(run(datetime(2025, 6, 10, 8, 0, 20, tzinfo=UTC)), groups, calendars, TUESDAY_1030, GRACE)
    assert not missed.ok and "fx-1h was due at 2025-06-10 10:00Z" in missed.detail
    never = check_runs(None, groups, calendars, TUESDAY_1030, GRACE)
    assert not never.ok and "no run yet" in never.detail


def test_a_weekend_without_runs_is_healthy_when_fridays_last_run_happened() -> None:
    groups, calendars = fx_hourly()
    friday_last = run(datetime(2025, 6, 13, 21, 0, 20, tzinfo=UTC))
    assert check_runs(friday_last, groups, calendars, SATURDAY_NOON, GRACE).ok
    missed = check_runs(run(datetime(2025, 6, 13, 18, 0, 20, tzinfo=UTC)), groups, calendars, SATURDAY_NOON, GRACE)
    assert not missed.ok


def test_heartbeat_checks_see_a_stopped_bot_a_stale_one_and_an_open_circuit() -> None:
    now = TUESDAY_1030
    max_age = timedelta(seconds=180)
    bot, broker = check_heartbeat(None, now, max_age)
    assert not bot.ok and "not running" in bot.detail and not broker.ok
    fresh = HeartbeatRecord(now - timedelta(seconds=30), now, 4242, "oanda-practice", "closed", 2)
    bot, broker = check_heartbeat(HeartbeatRecord.decode(fresh.encode()), now, max_age)
    assert bot.ok and "pid 4242" in bot.detail and broker.ok and "circuit closed" in broker.detail
    stale = HeartbeatRecord(now - timedelta(minutes=10), now, 4242, "paper", None, 0)
    bot, broker = check_heartbeat(stale, now, max_age)
    assert not bot.ok and "10 min ago" in bot.detail and broker.ok
    tripped = HeartbeatRecord(now, now, 4242, "oanda-practice", "open", 0)
    assert not check_heartbeat(tripped, now, max_age)[1].ok
    bot, broker = check_heartbeat(fresh, now, max_age, holder=None)  # a recent beat, but nobody holds the lock
    assert not bot.ok and not broker.ok
    assert bot.detail == "not running: no process holds the database lock (pid 4242 last beat 30 s ago)"
    assert check_heartbeat(fresh, now, max_age, holder=4242)[0].ok


async def test_telegram_is_reachable_through_get_me_and_failures_never_show_the_token() -> None:
    redactor = Redactor([TOKEN])
    async with FakeTelegram(token=TOKEN) as tg:
        ok = await check_telegram(tg.base_url, TOKEN, 5.0, redactor)
        assert ok.ok and "reachable as @" in ok.detail
        tg.fail_next("getMe", status=401, description="Unauthorized")
        refused = await check_telegram(tg.base_url, TOKEN, 5.0, redactor)
        assert not refused.ok and "401" in refused.detail and "Unauthorized" in refused.detail
    with socket.socket() as probe:  # a port nobody listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = await check_telegram(f"http://127.0.0.1:{port}/bot", TOKEN, 1.0, redactor)
    assert not down.ok and "unreachable" in down.detail
    assert TOKEN not in down.detail and TOKEN not in refused.detail
    missing = await check_telegram(None, "", 1.0, redactor)
    assert not missing.ok and "TELEGRAM_BOT_TOKEN" in missing.detail


def test_a_report_is_healthy_only_when_every_check_passes() -> None:
    good = Check(CheckName.DATABASE, True, "fine")
    bad = Check(CheckName.TELEGRAM, False, f"getMe answered 401 for {REDACTED}")
    assert HealthReport((good,)).ok
    report = HealthReport((good, bad))
    assert not report.ok
    assert report.text().splitlines() == ["UNHEALTHY", "ok   database  fine", f"FAIL telegram  {bad.detail}"]
    assert '"ok": false' in report.as_json()
    assert "❌ telegram" in report.html()


def test_heartbeat_record_round_trips() -> None:
    record = HeartbeatRecord(TUESDAY_1030, SATURDAY_NOON, 1, "paper", None, 3)
    assert HeartbeatRecord.decode(record.encode()) == record


def test_hours_without_signals_count_only_market_days_of_the_watched_calendars() -> None:
    from bot.services.runtime import market_day_time  # noqa: PLC0415

    xnys = [market_calendar("XNYS")]
    friday_last_setup = datetime(2025, 6, 13, 14, 0, tzinfo=UTC)
    monday_first_run = datetime(2025, 6, 16, 13, 35, tzinfo=UTC)
    # Friday 14:00-24:00 and Monday 00:00-13:35; the weekend does not count: below the 24 h alarm line.
    assert market_day_time(friday_last_setup, monday_first_run, xnys) == timedelta(hours=23, minutes=35)
    assert market_day_time(friday_last_setup, monday_first_run + timedelta(days=1), xnys) == timedelta(
        hours=47, minutes=35
    )
    # Independence Day 2025 is a Friday: Thursday 14:00 to Monday 14:00 is 10 h + 14 h.
    assert market_day_time(
        datetime(2025, 7, 3, 14, tzinfo=UTC), datetime(2025, 7, 7, 14, tzinfo=UTC), xnys
    ) == timedelta(hours=24)
    # FX trades on Sunday evening (New York): Sunday counts as a market day there.
    fx = [market_calendar("FX")]
    assert market_day_time(friday_last_setup, monday_first_run, fx) == timedelta(hours=23 + 24, minutes=35)


async def test_a_nearly_full_disk_and_a_failed_write_make_the_database_unhealthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "bot.db"
    async with await SqliteStore.open(db):
        pass
    assert check_database_file(db).ok
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(health.shutil, "disk_usage", lambda path: usage._replace(free=10 * 2**20))  # 10 MB left
    low = check_database_file(db)
    assert not low.ok and low.detail.endswith("only 10 MB free on its disk: free some space")
    monkeypatch.undo()
    failed = with_write_error(check_database_file(db), (TUESDAY_1030, "the disk is full"))
    assert not failed.ok and failed.detail == "the bot's last write failed at 10:30:00Z: the disk is full"
    assert with_write_error(check_database_file(db), None).ok
