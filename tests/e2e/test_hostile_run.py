"""Faults a hostile run of the real `tradebot run` process found, each against the real process.

The bot runs over the fake Bot API with the shared CSV data, as in test_bot.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_bot import CONFIG, STRANGER, TOKEN, TRADER, bot, bot_env
from tests.e2e.test_operations import datagrams
from tests.fakes.telegram_server import FakeTelegram

OTHER_TOKEN = "987654321:AAHanotherTokenTheServerExpects_abcdefgh"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield bot_env(tmp_path, monkeypatch, CONFIG.format(interval=0.05))


def test_a_token_telegram_rejects_exits_2_and_never_reaches_stderr(env: Path) -> None:
    with FakeTelegram(token=OTHER_TOKEN) as tg:  # it answers 401 Unauthorized to our token
        child_env = {**os.environ, "TELEGRAM_API_BASE_URL": tg.base_url, "TELEGRAM_BOT_TOKEN": TOKEN}
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", "run"],
            cwd=env,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2  # a configuration error: systemd does not restart it (RestartPreventExitStatus=2)
    assert "Telegram rejected TELEGRAM_BOT_TOKEN (Unauthorized)" in done.stderr
    assert TOKEN not in done.stderr and TOKEN.split(":")[1] not in done.stderr and TOKEN not in done.stdout
    assert "Traceback" not in done.stderr


def test_telegram_down_at_start_is_waited_for_while_systemd_is_told_and_the_bot_keeps_running(env: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify, FakeTelegram(token=TOKEN) as tg:
        address = str(env / "notify.sock")
        notify.bind(address)
        notify.setblocking(False)
        tg.fail_all(502)  # Bad Gateway to every call, getMe included
        child_env = {
            **os.environ,
            **tg.env(),
            "TRADEBOT_CLOCK_START": "2025-06-12T09:40:00Z",
            "NOTIFY_SOCKET": address,
            "WATCHDOG_USEC": "1000000",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run"], cwd=env, env=child_env, stderr=subprocess.PIPE, text=True
        )
        seen: list[str] = []
        try:
            deadline = time.monotonic() + 30
            while sum("Telegram unreachable" in m for m in seen) < 2:  # retried with backoff: 1 s, 2 s, ...
                assert proc.poll() is None, "the bot exited during the outage"
                assert time.monotonic() < deadline, f"no retries seen: {seen}"
                time.sleep(0.1)
                seen += datagrams(notify)
            tg.recover()
            tg.wait_until_sync(lambda: tg.polling or None, timeout=30, what="the bot to poll once Telegram is back")
            time.sleep(0.5)
            seen += datagrams(notify)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        seen += datagrams(notify)
        stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0, stderr
    assert seen[0].startswith("READY=1") and "STATUS=waiting for Telegram" in seen[0]  # never killed at start
    waiting = [m for m in seen if "Telegram unreachable since" in m]
    assert "no new entries" in waiting[0] and "NetworkError: Bad Gateway" in waiting[0]
    assert any(m.startswith("READY=1") and "STATUS=tradebot running: paper" in m for m in seen)
    assert "WATCHDOG=1" in seen  # pinged all along
    assert "Telegram reachable again after" in stderr and "Traceback" not in stderr


GROUP = -1001234567890


async def test_strangers_flooding_the_group_cannot_delay_a_signal(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_CHAT_ID", str(GROUP))  # signals go to the trading group
    async with FakeTelegram(token=TOKEN, group_messages_per_minute=20) as tg, bot(tg, env) as b:
        for n in range(60):  # 60 commands from three strangers in the group
            tg.user_message(STRANGER + n % 3, "/status", chat_id=GROUP)
        await asyncio.sleep(1.0)
        since = len(tg.sent)
        started = time.monotonic()
        tg.user_message(TRADER, "/signal", chat_id=GROUP)
        signal = await tg.wait_for_message(
            lambda m: m.chat_id == GROUP and "Approve" in str(m.buttons), since=since, timeout=30
        )
        assert time.monotonic() - started < 10  # Telegram would have made it wait a minute behind 60 refusals
        refusals = [m for m in tg.sent if m.chat_id == GROUP and "not authorised" in m.body]
        assert refusals == [] and ("GBPUSD" in signal.body or "XAUUSD" in signal.body)
        reply = await b.command("/status", user=STRANGER + 10)  # in a private chat a stranger is told, once
        assert reply.body == "You are not authorised to use this bot."
        since = len(tg.sent)
        tg.user_message(STRANGER + 10, "/status")
        await asyncio.sleep(1.0)
        assert not [m for m in tg.sent[since:] if m.chat_id == STRANGER + 10]


async def test_a_database_another_process_holds_is_told_at_once_and_health_says_so(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy_s = 1.0  # how long a write waits for the lock, and writes then pause after it failed
    monkeypatch.setenv("TRADEBOT_DB_BUSY_TIMEOUT_MS", f"{busy_s * 1000:.0f}")
    async with FakeTelegram(token=TOKEN) as tg, bot(tg, env) as b:
        await b.analyse()
        message = await b.signal_message("GBPUSD")
        # Another process holds the write lock (a long maintenance job); taken off the event loop, which the bot
        # runs on here and which must finish its own transaction first.
        holder = sqlite3.connect(env / "bot.db", isolation_level=None, timeout=30, check_same_thread=False)
        await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")
        try:
            since = len(tg.sent)
            press = tg.click(TRADER, message, button="✅ Approve")
            told = await tg.wait_for_message(
                lambda m: m.chat_id == TRADER and m.body.startswith("⚠️ The bot cannot use its database"),
                since=since,
                timeout=30,
            )
            assert "another process holds the database locked): nothing was changed" in told.body
            assert (await tg.wait_for_answer(press)).text == "Approving…"  # the failed work's press is answered
            health = await b.command("/health")
            assert health.body.startswith("🚨 Unhealthy") and "❌ database:" in health.body
            assert "another process holds the database locked" in health.body
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert b.query("SELECT status FROM signals WHERE symbol = 'GBPUSD'") == [("pending",)]
        await asyncio.sleep(busy_s)  # after a failed write, writes wait this long before trying again
        since = len(tg.sent)
        tg.click(TRADER, message, button="✅ Approve")  # the lock gone: the same button works
        await tg.wait_for_message(lambda m: "filled" in m.body and "GBPUSD" in m.body, since=since, timeout=30)
