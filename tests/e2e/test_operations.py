"""Operations end to end: systemd's notify protocol from the real bot process, the database lock, the daily backup
and summary, /health, and CloudWatch metrics (moto) from a running bot.

The bot is the real one over the fake Bot API with the shared CSV data, as in test_bot.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from bot.ops.health import HEARTBEAT_KEY, HeartbeatRecord
from data.backup import is_backup_name
from data.sqlite.store import SqliteStore
from tests.e2e.test_bot import CONFIG, TOKEN, TRADER, bot, bot_env
from tests.fakes.telegram_server import FakeTelegram

SUMMARY_AT = """
[summary]
at = "18:00"
timezone = "Europe/London"
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield bot_env(tmp_path, monkeypatch, CONFIG.format(interval=0.05) + SUMMARY_AT)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


def datagrams(sock: socket.socket) -> list[str]:
    """Every datagram waiting on the fake NOTIFY_SOCKET."""
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_the_bot_process_speaks_sd_notify_ready_watchdog_and_stopping(env: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify, FakeTelegram(token=TOKEN) as tg:
        address = str(env / "notify.sock")
        notify.bind(address)
        notify.setblocking(False)
        child_env = {
            **os.environ,
            **tg.env(),
            "TRADEBOT_CLOCK_START": "2025-06-12T09:40:00Z",
            "NOTIFY_SOCKET": address,
            "WATCHDOG_USEC": "1000000",  # systemd's WatchdogSec=1: the bot pings every 0.5 s
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run"], cwd=env, env=child_env, stderr=subprocess.PIPE, text=True
        )
        try:
            tg.wait_until_sync(lambda: tg.polling or None, timeout=30, what="the bot to poll")
            deadline = time.monotonic() + 15
            seen: list[str] = []
            beat_at_ready: list[tuple[str]] | None = None
            while sum(m == "WATCHDOG=1" for m in seen) < 3:
                assert time.monotonic() < deadline, f"watchdog pings did not come: {seen}"
                time.sleep(0.1)
                seen += datagrams(notify)
                if beat_at_ready is None and any(m.startswith("READY=1") for m in seen):
                    with contextlib.closing(sqlite3.connect(env / "bot.db")) as db:
                        beat_at_ready = db.execute(
                            "SELECT value FROM bot_state WHERE key = ?", (HEARTBEAT_KEY,)
                        ).fetchall()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        seen += datagrams(notify)
        stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0, stderr
    ready = next(i for i, m in enumerate(seen) if m.startswith("READY=1"))
    assert f"MAINPID={proc.pid}" in seen[ready] and "STATUS=tradebot running: paper" in seen[ready]
    assert seen[-1].startswith("STOPPING=1")
    assert all(m == "WATCHDOG=1" for m in seen[ready + 1 : -1])  # between READY and STOPPING: only pings
    # Started means `tradebot health` sees it: the first heartbeat is written before READY, not by a job after.
    assert beat_at_ready is not None and len(beat_at_ready) == 1
    assert HeartbeatRecord.decode(beat_at_ready[0][0]).pid == proc.pid


async def test_a_second_bot_on_the_same_database_is_refused_and_changes_nothing(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as running:
        child_env = {**os.environ, **tg.env()}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", cwd=env, env=child_env, stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 1
        assert f"in use by a running tradebot (pid {os.getpid()})" in err.decode()
        reply = await running.command("/status")  # the first bot is untouched
        assert "Mode" in reply.body or "mode" in reply.body


async def test_health_says_what_is_wrong_until_a_run_happens_then_healthy(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as running:
        first = await running.command("/health")
        assert first.body.startswith("🚨 Unhealthy")
        assert "❌ runs: no run yet; fx-1h was due at 2025-06-12 09:00Z" in first.body
        assert "✅ telegram: reachable as @" in first.body and "✅ database:" in first.body
        assert "✅ bot: pid " in first.body and "✅ broker: paper" in first.body
        await running.analyse()
        second = await running.command("/health")
        assert second.body.startswith("✅ Healthy"), second.body
        assert "last run #1 at 2025-06-12 09:40Z" in second.body
    async with await SqliteStore.open(env / "bot.db") as store:  # the heartbeat `tradebot health` reads
        raw = await store.get_state(HEARTBEAT_KEY)
    assert raw is not None and HeartbeatRecord.decode(raw).pid == os.getpid()


async def test_the_daily_backup_is_taken_once_and_the_summary_sent_once_across_a_restart(
    tg: FakeTelegram, env: Path
) -> None:
    backups = env / "backups"
    async with bot(tg, env) as running:
        # 09:40 UTC is past the backup hour (03:00): the first tick takes today's backup.
        await running.eventually(lambda: backups.is_dir() and any(is_backup_name(p.name) for p in backups.iterdir()))
        assert not any("Daily summary" in m.body for m in tg.sent)
        running.advance(timedelta(hours=7, minutes=25))  # 17:05 UTC = 18:05 in London (BST)
        summary = await tg.wait_for_message(lambda m: "Daily summary" in m.body, chat_id=TRADER, timeout=20)
        assert "Daily summary Thu 12 Jun 2025 (Europe/London)" in summary.body
        assert "trades closed: none" in summary.body and "open positions: 0" in summary.body
        assert "signals dropped today: none" in summary.body
    names = sorted(p.name for p in backups.iterdir() if is_backup_name(p.name))
    assert len(names) == 1 and names[0].startswith("tradebot-20250612T0940")  # named by the bot clock, UTC
    sent = sum("Daily summary" in m.body for m in tg.sent)
    async with bot(tg, env) as running:
        running.advance(timedelta(hours=7, minutes=30))  # the bot clock restarts at 09:40; move it past 18:00 BST
        await asyncio.sleep(3)  # several ticks
        assert sum("Daily summary" in m.body for m in tg.sent) == sent  # not sent twice for the same local day
    assert len([p for p in backups.iterdir() if is_backup_name(p.name)]) == 1  # nor a second backup that day


async def test_a_running_bot_publishes_its_metrics_to_cloudwatch(
    tg: FakeTelegram, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEBOT_METRICS__REGION", "us-east-1")
    monkeypatch.setenv("TRADEBOT_METRICS__FLUSH_SECONDS", "0.2")
    monkeypatch.setenv("TRADEBOT_METRICS__HEARTBEAT_SECONDS", "0.5")
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")

        def total(name: str, dimensions: list[dict[str, str]] | None = None) -> tuple[float, float]:
            now = datetime.now(UTC)
            points = cloudwatch.get_metric_statistics(
                Namespace="TradingBot",
                MetricName=name,
                Dimensions=dimensions or [],
                StartTime=now - timedelta(hours=1),
                EndTime=now + timedelta(minutes=5),
                Period=3600,
                Statistics=["Sum", "SampleCount"],
            )["Datapoints"]
            return sum(p["Sum"] for p in points), sum(p["SampleCount"] for p in points)

        async with bot(tg, env) as running:
            await running.analyse()
            signal_message = await running.signal_message("GBPUSD")
            query = tg.click(TRADER, signal_message, button="✅ Approve")
            await tg.wait_for_answer(query)
            await running.eventually(lambda: total("ApprovalLatency")[1] >= 1 and total("Heartbeat")[1] >= 2)
        # One run found GBPUSD and XAUUSD, both trend_pullback: the total (no dimension, what the no-signals alarm
        # watches) and one point per strategy, zero included. moto does not filter on an empty dimension set, so
        # the first sum is over all three points.
        assert total("SignalsGenerated") == (2 + 2 + 0, 3)
        assert total("SignalsGenerated", [{"Name": "Strategy", "Value": "trend_pullback"}]) == (2, 1)
        listed = cloudwatch.list_metrics(Namespace="TradingBot", MetricName="SignalsGenerated")["Metrics"]
        assert sorted(len(m["Dimensions"]) for m in listed) == [0, 1, 1]
        assert total("SignalQuality")[1] == 2
        assert total("ScanDuration")[1] == 1 and total("DataErrors") == (0, 1)
        assert total("CircuitOpen")[0] == 0 and total("ApprovalsPending")[1] >= 2
        assert total("HoursWithoutSignals") == (0, 1)  # this run found setups


async def cli(env: Path, tg: FakeTelegram, *args: str) -> tuple[int, str, str]:
    """Run `tradebot ARGS` as a process with the bot's environment."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        cwd=env,
        env={**os.environ, **tg.env()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_tradebot_health_exits_1_with_the_failing_checks_and_0_when_all_pass(tg: FakeTelegram, env: Path) -> None:
    code, out, _ = await cli(env, tg, "health")
    assert code == 1
    assert out.splitlines()[0] == "UNHEALTHY" and f"FAIL database  no database at {env / 'bot.db'}" in out
    assert "FAIL bot       no heartbeat: the bot is not running" in out
    assert "ok   telegram  reachable as @" in out and TOKEN not in out
    async with bot(tg, env) as running:
        await running.analyse()
        # The process checks with the wall clock: the last run due then (a real market hour) was never run here,
        # so `runs` fails while everything else passes.
        code, out, _ = await cli(env, tg, "health", "--json")
    assert code == 1
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert {name for name, c in checks.items() if c["ok"]} >= {"database", "bot", "broker", "telegram"}
    assert checks["bot"]["detail"].startswith(f"pid {os.getpid()}, last heartbeat")
    # Stopped a moment ago: its heartbeat is seconds old, but no process holds the database any more.
    code, out, _ = await cli(env, tg, "health", "--json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert code == 1 and not checks["bot"]["ok"] and not checks["broker"]["ok"]
    assert checks["bot"]["detail"].startswith(f"not running: no process holds the database lock (pid {os.getpid()}")


async def test_a_pause_from_the_shell_stops_approvals_of_the_running_bot_at_once(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as running:
        await running.analyse()
        message = await running.signal_message("GBPUSD")
        code, out, _ = await cli(env, tg, "pause")
        assert code == 0 and out.startswith("tradebot is paused")
        since = len(tg.sent)
        await tg.wait_for_answer(tg.click(TRADER, message, button="✅ Approve"))
        refusal = await tg.wait_for_message(lambda m: "paused" in m.body, chat_id=TRADER, since=since, timeout=20)
        assert "The bot is paused; /resume first." in refusal.body
        assert running.query("SELECT COUNT(*) FROM orders") == [(0,)]
        code, out, _ = await cli(env, tg, "resume")
        assert code == 0 and out.startswith("tradebot is running")
        status = await running.command("/status")
        assert "▶️ running" in status.body and "PAUSED" not in status.body
