"""A kill -9 between the approval commit and the broker's answer leaves exactly one order and a consistent DB.

The bot runs as a real process (`tradebot run`) against the fake Telegram Bot API and the fake OANDA server.
The approval click commits the approval with its order intent; the fake broker then holds the order request
open, either before taking it (the order never reached the broker) or after (the broker took it but the
answer never came back). The bot is killed with SIGKILL right then and started again: its reconciliation
asks the broker for the order by its client order id and sends it only when the broker does not know it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from asyncio.subprocess import Process
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.ops.health import HEARTBEAT_KEY, HeartbeatRecord
from tests.fakes.oanda_server import FakeOanda, Fault, Route
from tests.fakes.telegram_server import FakeTelegram
from tests.support import require_market_dir

TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"
OANDA_TOKEN = "oanda-secret-token-for-tests"
ACCOUNT = "101-004-1234567-001"
TRADER = 42
CONFIG = """
[[watchlist]]
symbol = "GBPUSD"
asset_class = "fx"
interval = "1h"
tick_size = "0.00001"
pip_size = "0.0001"
lot_size = "0.01"
contract_size = "100000"
calendar = "FX"
spread = "0.00012"

[backtest]
validate_in_background = false  # the tests that need a baseline store one
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "tradebot.toml").write_text(CONFIG)
    yield tmp_path


def bot_env(workdir: Path, tg: FakeTelegram, oanda: FakeOanda) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_", "OANDA_"))}
    return {
        **base,
        **tg.env(),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_ALLOWED_USERS": str(TRADER),
        "TRADEBOT_CONFIG": str(workdir / "tradebot.toml"),
        "TRADEBOT_DATA_SOURCE": f"csv:{require_market_dir()}",
        "TRADEBOT_DB_PATH": str(workdir / "bot.db"),
        "TRADEBOT_CLOCK_START": "2025-06-12T09:40:00Z",
        "TRADEBOT_BROKER__KIND": "oanda",
        "TRADEBOT_BROKER__OANDA_ACCOUNT_ID": ACCOUNT,
        "TRADEBOT_BROKER__OANDA_BASE_URL": oanda.base_url,
        "TRADEBOT_BROKER__TIMEOUT_SECONDS": "60",
        "OANDA_TOKEN": OANDA_TOKEN,
    }


def status_of(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT signal_id, status FROM signals WHERE status NOT IN ('new', 'dropped')").fetchall()


async def until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition did not become true in time"
        await asyncio.sleep(0.05)


COMMAND = (sys.executable, "-m", "bot.cli", "run")


async def approve_until_committed(
    workdir: Path, tg: FakeTelegram, oanda: FakeOanda, env: Mapping[str, str] | None = None
) -> tuple[Process, str]:
    """Start the real bot (with `env` over the usual), offer GBPUSD and approve it; return the process once the order
    intent is committed and its request reached the (faulty) broker, with the signal id."""
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, cwd=workdir, env={**bot_env(workdir, tg, oanda), **(env or {})}, stderr=asyncio.subprocess.PIPE
    )
    try:
        await tg.wait_for_polling(timeout=30)
        tg.user_message(TRADER, "/signal")
        message = await tg.wait_for_message(
            lambda m: "GBPUSD" in m.body and "Approve" in str(m.buttons), since=0, timeout=30
        )
        tg.click(TRADER, message, button="✅ Approve")
        await until(lambda: len(oanda.requests_for(Route.ORDERS)) == 1)
        ((signal_id, status),) = status_of(workdir / "bot.db")
        assert status == "order_submitted"  # the approval and the order intent are committed
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, str(signal_id)


@pytest.mark.parametrize(
    ("fault", "posts"),
    [
        (Fault.timeout(120.0), 2),  # killed before the broker took the order: the restart sends it once
        (Fault.accept_then_hang(120.0), 1),  # the broker took it, the answer was lost: the restart finds it
    ],
    ids=["order-not-at-broker", "order-at-broker-answer-lost"],
)
async def test_kill_9_between_approval_and_fill_leaves_exactly_one_order(
    workdir: Path, fault: Fault, posts: int
) -> None:
    db = workdir / "bot.db"
    async with FakeTelegram(token=TOKEN) as tg, FakeOanda(token=OANDA_TOKEN, account_id=ACCOUNT) as oanda:
        oanda.set_price("GBP_USD", "1.35645", "1.35657")
        oanda.inject(Route.ORDERS, fault)
        proc, signal_id = await approve_until_committed(workdir, tg, oanda)
        try:
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

        env = bot_env(workdir, tg, oanda)
        restarted = await asyncio.create_subprocess_exec(*COMMAND, cwd=workdir, env=env, stderr=asyncio.subprocess.PIPE)
        try:
            await until(lambda: status_of(db) == [(signal_id, "filled")])
        finally:
            restarted.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(restarted.communicate(), timeout=20)
        assert len(oanda.orders) == 1 and oanda.orders[0]["clientExtensions"]["id"] == signal_id
        assert len(oanda.requests_for(Route.ORDERS)) == posts
        with sqlite3.connect(db) as conn:
            trades = conn.execute("SELECT trade_id, kind, quantity FROM trades").fetchall()
            orders = conn.execute("SELECT client_order_id, fill_quantity FROM orders").fetchall()
        assert [(t[0], t[1]) for t in trades] == [(signal_id, "live")]
        assert orders == [(signal_id, trades[0][2])]
        assert OANDA_TOKEN not in stderr.decode()


async def test_sigterm_while_the_broker_hangs_exits_0_in_time_and_the_restart_sends_the_order_once(
    workdir: Path,
) -> None:
    db = workdir / "bot.db"
    async with FakeTelegram(token=TOKEN) as tg, FakeOanda(token=OANDA_TOKEN, account_id=ACCOUNT) as oanda:
        oanda.set_price("GBP_USD", "1.35645", "1.35657")
        oanda.inject(Route.ORDERS, Fault.timeout(120.0))  # the order request hangs and never reaches OANDA
        beats = {"TRADEBOT_METRICS__HEARTBEAT_SECONDS": "0.2"}  # a job that writes when it runs
        proc, signal_id = await approve_until_committed(workdir, tg, oanda, beats)
        try:
            started, stopping = time.monotonic(), datetime.now(UTC)
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=15)
            elapsed = time.monotonic() - started
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = stderr.decode()
        assert proc.returncode == 0, text[-3000:]
        assert elapsed < 10 and "Traceback" not in text, text[-4000:]
        assert "cancelled 1 command(s) or click(s) still running" in text
        assert status_of(db) == [(signal_id, "order_submitted")]  # left for reconciliation, not failed
        # No job ran once the stop began, though the hung click held the stop for seconds (the margin: a beat that
        # began as the signal arrived)
        with sqlite3.connect(db) as conn:
            ((beat,),) = conn.execute("SELECT value FROM bot_state WHERE key = ?", (HEARTBEAT_KEY,)).fetchall()
        assert HeartbeatRecord.decode(beat).at < stopping + timedelta(seconds=1)

        env = bot_env(workdir, tg, oanda)
        restarted = await asyncio.create_subprocess_exec(*COMMAND, cwd=workdir, env=env, stderr=asyncio.subprocess.PIPE)
        try:
            await until(lambda: status_of(db) == [(signal_id, "filled")])
        finally:
            restarted.send_signal(signal.SIGTERM)
            await asyncio.wait_for(restarted.communicate(), timeout=20)
        assert len(oanda.orders) == 1 and oanda.orders[0]["clientExtensions"]["id"] == signal_id
