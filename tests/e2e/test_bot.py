"""The Telegram bot end to end: the real python-telegram-bot over HTTP against the fake Bot API server,
the CSV data source on the shared market data, a real SQLite file, and bot time moved by the test.

At 2025-06-12T09:40Z the shared data holds two trend_pullback longs: GBPUSD (entry 1.35651, stop 1.35347)
and XAUUSD. An hour later GBPUSD's last closed bar is at 1.35766, 0.4R above its entry.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.ops.clock import BotClock
from bot.telegram.app import serve
from tests.fakes.telegram_server import FakeTelegram, SentMessage
from tests.support import require_market_dir

TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"
TRADER, PARTNER, STRANGER = 42, 43, 99
START = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)
RUN_SUMMARY = re.compile(r"Run \d+: ")  # how /signal's last reply begins
CONFIG = """
[bot]
send_interval_seconds = {interval}

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

[[watchlist]]
symbol = "XAUUSD"
asset_class = "metal"
interval = "1h"
tick_size = "0.01"
pip_size = "0.1"
lot_size = "0.01"
contract_size = "100"
calendar = "FX"
spread = "0.25"

[backtest]
validate_in_background = false  # the tests that need a baseline store one
"""


class ManualMonotonic:
    """The monotonic source of the bot clock, moved by the test."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Running:
    tg: FakeTelegram
    mono: ManualMonotonic
    db: Path

    def advance(self, delta: timedelta) -> None:
        self.mono.t += delta.total_seconds()

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql).fetchall()

    async def command(self, text: str, user: int = TRADER) -> SentMessage:
        """Send a command and return the bot's first reply to it (signals and fills still being delivered, and an
        earlier /signal's closing "Run N: ..." reply, which comes when its analysis ends, don't count)."""
        since = len(self.tg.sent)
        self.tg.user_message(user, text)

        def is_reply(m: SentMessage) -> bool:
            late = RUN_SUMMARY.match(m.body) is not None
            return m.chat_id == user and "Approve" not in str(m.buttons) and not m.body.startswith("📥") and not late

        return await self.tg.wait_for_message(is_reply, since=since, timeout=20)

    async def eventually(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        """Wait until `condition` holds (checked every 50 ms)."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition did not become true in time"
            await asyncio.sleep(0.05)

    async def analyse(self) -> SentMessage:
        """Send /signal and wait for the run's summary."""
        since = len(self.tg.sent)
        self.tg.user_message(TRADER, "/signal")
        return await self.tg.wait_for_message(
            lambda m: m.chat_id == TRADER and m.body.startswith("Run "), since=since, timeout=20
        )

    async def signal_message(self, symbol: str) -> SentMessage:
        return await self.tg.wait_for_message(
            lambda m: symbol in m.body and "Approve" in str(m.buttons) and m.chat_id == TRADER, since=0, timeout=20
        )


def bot_env(folder: Path, monkeypatch: pytest.MonkeyPatch, config_text: str) -> Path:
    """A clean bot environment in `folder`: this config, the shared CSV data, a database there, the test token."""
    for name in list(os.environ):
        if name.startswith(("TRADEBOT_", "TELEGRAM_")):
            monkeypatch.delenv(name)
    config = folder / "tradebot.toml"
    config.write_text(config_text)
    monkeypatch.setenv("TRADEBOT_CONFIG", str(config))
    monkeypatch.setenv("TRADEBOT_DATA_SOURCE", f"csv:{require_market_dir()}")
    monkeypatch.setenv("TRADEBOT_DB_PATH", str(folder / "bot.db"))
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_ALLOWED_USERS", f"{TRADER},{PARTNER}")
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield bot_env(tmp_path, monkeypatch, CONFIG.format(interval=0.05))


@asynccontextmanager
async def bot(tg: FakeTelegram, tmp_path: Path, mono: ManualMonotonic | None = None) -> AsyncIterator[Running]:
    os.environ["TELEGRAM_API_BASE_URL"] = tg.base_url
    mono = mono or ManualMonotonic()
    clock = BotClock(START, 1.0, monotonic=mono)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(load_settings(), stop, clock))
    try:
        await tg.wait_for_polling(timeout=20)
        yield Running(tg, mono, tmp_path / "bot.db")
    finally:
        stop.set()
        assert await asyncio.wait_for(task, timeout=10) == 0
    assert gc.get_freeze_count() == 0  # a stopped bot leaves nothing frozen


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


async def test_a_stranger_is_refused_and_changes_nothing(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        for _ in range(200):  # once started, the start-up heap is frozen out of the collector's full passes
            if gc.get_freeze_count() > 0:
                break
            await asyncio.sleep(0.05)
        assert gc.get_freeze_count() > 1000
        reply = await b.command("/signal", user=STRANGER)
        assert reply.body == "You are not authorised to use this bot."
        assert b.query("SELECT COUNT(*) FROM analysis_runs") == [(0,)]

        await b.command("/signal")
        message = await b.signal_message("GBPUSD")
        query = tg.click(STRANGER, message, button="✅ Approve", chat_id=TRADER)
        answer = await tg.wait_for_answer(query)
        assert answer.text == "You are not authorised to use this bot." and answer.show_alert
        assert b.query("SELECT COUNT(*) FROM orders") == [(0,)]
        assert b.query("SELECT status FROM signals WHERE symbol = 'GBPUSD'") == [("pending",)]


async def test_signal_command_sends_signals_with_buttons_from_real_data(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        summary = await b.command("/signal")
        assert summary.body == "Running an analysis…"
        gbp = await b.signal_message("GBPUSD")
        text = gbp.body
        for part in ("GBPUSD", "LONG", "trend_pullback", "1h", "entry 1.35651", "stop 1.35347", "target 1.36259"):
            assert part in text, part
        assert "R:R 2.00" in text and "size 0.27 lots" in text and "notional " in text and "quality 74/100" in text
        assert "expires Thu 12 Jun 07:00 EDT (11:00Z)" in text
        assert [label for label, _ in gbp.buttons] == ["✅ Approve", "❌ Reject"]
        assert all(len(data.encode()) <= 64 for _, data in gbp.buttons if data)
        done = await tg.wait_for_message(lambda m: m.body.startswith("Run 1:"), since=0, timeout=20)
        assert "2 setups: 2 new signals sent, 0 dropped." in done.body


async def test_the_bot_copies_its_log_into_the_database_file_on_its_tick(tg: FakeTelegram, env: Path) -> None:
    # No commit of the bot's (a click's) copies the write-ahead log into the file: its tick does, off the store's
    # connection. The file itself (read without the log) holds the approval's trade a tick later.
    async with bot(tg, env) as b:
        await b.command("/signal")
        tg.click(TRADER, await b.signal_message("GBPUSD"), button="✅ Approve")
        await tg.wait_for_message(lambda m: "filled" in m.body and "GBPUSD" in m.body, since=0, timeout=20)

        def in_the_file() -> list[tuple[object, ...]]:
            with closing(sqlite3.connect(f"file:{b.db}?immutable=1", uri=True)) as conn:
                try:
                    return conn.execute("SELECT symbol, kind FROM trades").fetchall()
                except sqlite3.OperationalError:  # not even the schema copied yet
                    return []

        await b.eventually(lambda: in_the_file() == [("GBPUSD", "paper")], timeout=10)


async def test_approve_gives_one_order_and_one_fill(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        await b.command("/signal")
        message = await b.signal_message("GBPUSD")
        query = tg.click(TRADER, message, button="✅ Approve")
        assert (await tg.wait_for_answer(query)).text == "Approving…"
        fill = await tg.wait_for_message(lambda m: "filled" in m.body and "GBPUSD" in m.body, since=0, timeout=20)
        assert "filled 0.27 lots @ 1.35671 (fees 3.66)" in fill.body  # ask 1.35657 + 1 bp slippage, tick up; 1 bp fee
        edited = await tg.wait_for_edit(message.chat_id, message.message_id, lambda m: "filled" in m.body, timeout=20)
        assert edited.buttons == [] and "filled by Tester at" in edited.body  # the approver by name
        assert b.query("SELECT COUNT(*) FROM orders") == [(1,)]
        assert b.query("SELECT kind, quantity, entry_price FROM trades") == [("paper", "0.27", "1.35671")]


async def test_a_press_does_its_work_while_telegram_takes_the_answer(tg: FakeTelegram, env: Path) -> None:
    # Telegram's round trip for the answer (tens of milliseconds from a server) is not on the work's path, for every
    # button that answers before its work: here each answer takes 2 s, and the work is done and told meanwhile.
    async with bot(tg, env) as b:
        await b.analyse()
        gbp, xau = await b.signal_message("GBPUSD"), await b.signal_message("XAUUSD")
        tg.slow("answerCallbackQuery", 2.0)

        async def press(message: SentMessage, button: str, done: Callable[[], bool], answer: str) -> None:
            started = time.monotonic()
            query = tg.click(TRADER, message, button=button)
            await b.eventually(done)
            assert query not in tg.callback_answers and time.monotonic() - started < 2.0, button
            assert (await tg.wait_for_answer(query, timeout=10)).text == answer  # and it does come

        def told(since: int, text: str) -> Callable[[], bool]:
            return lambda: any(m.chat_id == TRADER and text in m.body for m in tg.sent[since:])

        filled = "SELECT COUNT(*) FROM orders WHERE filled_at IS NOT NULL"
        await press(gbp, "✅ Approve", lambda: b.query(filled) == [(1,)], "Approving…")
        status = "SELECT status FROM signals WHERE symbol = 'XAUUSD'"
        await press(xau, "❌ Reject", lambda: b.query(status) == [("rejected",)], "Rejecting…")
        fill = next(m for m in tg.sent if m.body.startswith("📥") and "GBPUSD" in m.body and m.chat_id == TRADER)
        [(trade_id,)] = b.query("SELECT trade_id FROM trades WHERE kind = 'paper'")
        await press(fill, "Stop → breakeven", told(len(tg.sent), trade_id), "Moving the stop…")
        closed = "SELECT exit_reason FROM trades WHERE kind = 'paper'"
        await press(fill, f"Close GBPUSD {trade_id}", lambda: b.query(closed) == [("manual",)], "Closing…")


async def test_a_double_click_gives_exactly_one_order(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        await b.command("/signal")
        message = await b.signal_message("GBPUSD")
        first = tg.click(TRADER, message, button="✅ Approve")
        second = tg.click(TRADER, message, button="✅ Approve")
        third = tg.click(PARTNER, message, button="✅ Approve", chat_id=TRADER)
        for query in (first, second, third):
            await tg.wait_for_answer(query)
        await tg.wait_for_message(lambda m: "filled" in m.body and "GBPUSD" in m.body, since=0, timeout=20)
        await asyncio.sleep(0.5)
        assert b.query("SELECT COUNT(*) FROM orders") == [(1,)]
        assert b.query("SELECT COUNT(*) FROM trades") == [(1,)]
        fills = [m for m in tg.sent if m.body.startswith("📥") and "GBPUSD" in m.body]
        assert sorted(m.chat_id for m in fills) == [TRADER, PARTNER]  # one fill, told to each allowed user


async def test_a_click_after_expiry_is_refused_and_the_message_says_expired(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        await b.command("/signal")
        message = await b.signal_message("GBPUSD")
        b.advance(timedelta(hours=1, minutes=25))  # 11:05: past the 11:00 expiry
        edited = await tg.wait_for_edit(message.chat_id, message.message_id, lambda m: "expired" in m.body, timeout=20)
        assert edited.buttons == []
        query = tg.click(TRADER, message, data=message.buttons[0][1], allow_stale=True)
        assert (await tg.wait_for_answer(query)).text == "This button is no longer valid."
        assert b.query("SELECT COUNT(*) FROM orders") == [(0,)]


async def test_a_price_that_drifted_is_refused_with_both_prices(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        await b.command("/signal")
        message = await b.signal_message("GBPUSD")
        b.advance(timedelta(minutes=50))  # 10:30: the 09:00 bar closed at 1.35766
        since = len(tg.sent)
        tg.click(TRADER, message, button="✅ Approve")
        refusal = await tg.wait_for_message(lambda m: m.body.startswith("Refused"), since=since, timeout=20)
        assert refusal.body == "Refused: price moved from 1.35651 to 1.35772 (0.40R > 0.25R)."
        assert b.query("SELECT status FROM signals WHERE symbol = 'GBPUSD'") == [("pending",)]
        assert b.query("SELECT COUNT(*) FROM orders") == [(0,)]


async def test_stop_survives_a_restart_and_blocks_approvals_until_resume(tg: FakeTelegram, env: Path) -> None:
    mono = ManualMonotonic()
    async with bot(tg, env, mono) as b:
        await b.analyse()
        message = await b.signal_message("GBPUSD")
        stopped = await b.command("/stop")
        assert stopped.body.startswith("⏸ Stopped")
    async with bot(tg, env, mono) as b:
        status = await b.command("/status")
        assert "PAUSED" in status.body
        since = len(tg.sent)
        query = tg.click(TRADER, message, button="✅ Approve")  # a button from before the restart
        assert (await tg.wait_for_answer(query)).text == "Approving…"
        refusal = await tg.wait_for_message(lambda m: "paused" in m.body, since=since, timeout=20)
        assert refusal.body == "The bot is paused; /resume first."
        assert b.query("SELECT COUNT(*) FROM orders") == [(0,)]
        await b.command("/resume")
        tg.click(TRADER, message, button="✅ Approve")
        await tg.wait_for_message(lambda m: "filled" in m.body and "GBPUSD" in m.body, since=since, timeout=20)
        assert b.query("SELECT COUNT(*) FROM orders") == [(1,)]


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ("/report abc", "it takes three arguments"),
        ("/report abc win", "it takes three arguments"),
        ("/report 0000000000 win 12", "no signal has the id 0000000000"),
        ("/report x draw 5", "'x' is not a signal id"),
    ],
)
async def test_report_with_bad_arguments_says_why_with_the_usage(
    tg: FakeTelegram, env: Path, args: str, why: str
) -> None:
    async with bot(tg, env) as b:
        reply = await b.command(args)
        assert reply.body.startswith(why) and "usage: /report" in reply.body


@pytest.mark.parametrize(
    ("outcome", "why"),
    [
        ("win 1e1000000", "P&L must be a plain number such as 125.50 or -80 (got '1e1000000')"),
        ("win Infinity", "P&L must be a plain number"),
        ("win ١٢٣", "P&L must be a plain number"),
        ("breakeven 5000", "a breakeven is within ±"),
        ("loss 40", "a loss has a negative P&L, not 40"),
    ],
)
async def test_a_huge_foreign_or_contradictory_pnl_is_refused_to_its_sender_only(
    tg: FakeTelegram, env: Path, outcome: str, why: str
) -> None:
    async with bot(tg, env) as b:
        await b.analyse()
        message = await b.signal_message("GBPUSD")
        signal_id = message.buttons[0][1].split(":")[1]  # type: ignore[union-attr]
        since = len(tg.sent)
        reply = await b.command(f"/report {signal_id} {outcome}")
        assert reply.body.startswith(why) and "usage: /report" in reply.body
        await asyncio.sleep(0.3)
        others = [m for m in tg.sent[since:] if m.chat_id != TRADER and "Approve" not in str(m.buttons)]
        assert not others  # nothing to the other chats (signals still being delivered aside)
        assert not [m for m in tg.sent[since:] if "error" in m.body.lower() or "failed" in m.body.lower()]
        assert b.query("SELECT COUNT(*) FROM trades WHERE kind = 'external'") == [(0,)]


async def test_report_records_an_outside_trade_and_summarises(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        await b.analyse()
        message = await b.signal_message("GBPUSD")
        signal_id = message.buttons[0][1].split(":")[1]  # type: ignore[union-attr]
        recorded = await b.command(f"/report {signal_id} win 120.50")
        assert recorded.body == f"Recorded win of 120.50 for {signal_id}."
        again = await b.command(f"/report {signal_id} win 120.50")
        assert "already reported" in again.body
        report = await b.command("/report")
        assert "1 trade · win 100%" in report.body and "net 120.50" in report.body
        assert "Score calibration: no learned model yet" in report.body


async def test_report_refuses_an_outside_outcome_for_a_signal_the_bot_executed(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        await b.analyse()
        message = await b.signal_message("GBPUSD")
        signal_id = message.buttons[0][1].split(":")[1]  # type: ignore[union-attr]
        since = len(tg.sent)
        tg.click(TRADER, message, button="✅ Approve")
        await tg.wait_for_message(lambda m: "filled" in m.body and "GBPUSD" in m.body, since=since, timeout=20)
        refused = await b.command(f"/report {signal_id} win 120.50")
        assert refused.body == f"The bot executed {signal_id}; its outcome is recorded already."
        assert b.query("SELECT COUNT(*) FROM trades WHERE kind = 'external'") == [(0,)]


async def test_telegram_errors_delay_signals_but_lose_none(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        tg.fail_next("sendMessage", times=2, status=502)  # the reply (and whatever text follows)
        tg.fail_next("sendPhoto", times=1, status=429, retry_after=1)  # the signals go out as charts
        await b.command("/signal")  # its reply may come after the signals: the first try of it failed
        gbp = await tg.wait_for_message(lambda m: "GBPUSD" in m.body and bool(m.buttons), since=0, timeout=30)
        xau = await tg.wait_for_message(lambda m: "XAUUSD" in m.body and bool(m.buttons), since=0, timeout=30)
        assert gbp and xau
        failures = [c for c in tg.calls_to("sendMessage") if c.status in (429, 502)]
        assert len(failures) >= 2
        assert [c for c in tg.calls_to("sendPhoto") if c.status == 429]
        await b.eventually(lambda: b.query("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL") == [(0,)])


async def test_signals_to_one_chat_are_paced(tg: FakeTelegram, env: Path) -> None:
    (env / "tradebot.toml").write_text(CONFIG.format(interval=1.0))
    async with bot(tg, env):
        tg.user_message(TRADER, "/signal")
        await tg.wait_for_message(lambda m: "XAUUSD" in m.body and bool(m.buttons), since=0, timeout=30)
        await tg.wait_for_message(lambda m: "GBPUSD" in m.body and bool(m.buttons), since=0, timeout=30)
        signal_sends = [
            c
            for c in tg.calls_to("sendPhoto", status=200)
            if c.params.get("reply_markup") and c.params.get("chat_id") == TRADER
        ]
        assert len(signal_sends) == 2, "each signal goes out as its chart with the caption and the buttons"
        assert not [c for c in tg.calls_to("sendMessage") if c.params.get("reply_markup")]
        assert signal_sends[1].at - signal_sends[0].at >= 0.95


def test_sigterm_stops_the_bot_promptly_with_exit_0(env: Path) -> None:
    with FakeTelegram(token=TOKEN) as tg:
        child_env = {**os.environ, **tg.env(), "TRADEBOT_CLOCK_START": "2025-06-12T09:40:00Z"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run"], cwd=env, env=child_env, stderr=subprocess.PIPE, text=True
        )
        try:
            tg.wait_until_sync(lambda: tg.polling or None, timeout=30, what="the bot to poll")
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
            elapsed = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
        stderr = proc.stderr.read() if proc.stderr else ""
        assert code == 0, stderr
        assert elapsed < 10
        assert "Traceback" not in stderr
        assert "tradebot running" in stderr and "stopped in" in stderr  # the service logs at INFO...
        assert TOKEN not in stderr  # ...and never the token


@pytest.mark.parametrize(
    ("unset", "value", "message"),
    [
        ("TELEGRAM_BOT_TOKEN", None, "TELEGRAM_BOT_TOKEN is not set. Create a bot by talking to @BotFather"),
        ("TELEGRAM_ALLOWED_USERS", "", "TELEGRAM_ALLOWED_USERS is empty"),
    ],
)
def test_run_refuses_to_start_without_token_or_users(env: Path, unset: str, value: str | None, message: str) -> None:
    child_env = {k: v for k, v in os.environ.items() if k != unset}
    if value is not None:
        child_env[unset] = value
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run"],
        cwd=env,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_position_closes_from_its_fill_message_once_and_only_by_the_owner(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        await b.analyse()  # to its summary: a later reply must not race it
        tg.click(TRADER, await b.signal_message("GBPUSD"), button="✅ Approve")
        fill = await tg.wait_for_message(
            lambda m: m.body.startswith("📥") and "GBPUSD" in m.body and m.chat_id == TRADER, since=0, timeout=20
        )
        [(trade_id,)] = b.query("SELECT trade_id FROM trades")
        assert [label for label, _ in fill.buttons] == [f"Close GBPUSD {trade_id}", "Stop → breakeven"]
        # PARTNER may approve signals but not close positions: only the owner (the first allowed user) can.
        since = len(tg.sent)
        tg.click(PARTNER, fill, button=f"Close GBPUSD {trade_id}")
        refused = await tg.wait_for_message(lambda m: "owner" in m.body, since=since, timeout=20)
        assert refused.body == "Only the bot's owner can close positions or move their stops."
        assert b.query("SELECT COUNT(*) FROM trades WHERE exit_time IS NULL") == [(1,)]
        since = len(tg.sent)
        query = tg.click(TRADER, fill, button=f"Close GBPUSD {trade_id}")
        assert (await tg.wait_for_answer(query, timeout=20)).text == "Closing…"
        closed = await tg.wait_for_message(lambda m: m.body.startswith("Closed GBPUSD"), since=since, timeout=20)
        assert closed.body.startswith(f"Closed GBPUSD {trade_id} @ ")
        await tg.wait_for_message(
            lambda m: "closed (manual)" in m.body and m.chat_id == TRADER, since=since, timeout=20
        )
        # The same button again: nothing to close, and the message loses its buttons.
        since = len(tg.sent)
        tg.click(TRADER, fill, button=f"Close GBPUSD {trade_id}")
        stale = await tg.wait_for_message(lambda m: m.chat_id == TRADER, since=since, timeout=20)
        assert stale.body == f"No open position {trade_id}."
        await tg.wait_for_edit(fill.chat_id, fill.message_id, lambda m: m.buttons == [], timeout=20)
        assert b.query("SELECT action, status FROM trade_actions") == [("close", "done")]
        assert b.query("SELECT exit_reason FROM trades") == [("manual",)]
        assert (await b.command("/positions")).body == "No open positions."


async def test_stop_offers_to_close_exactly_the_positions_it_lists(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        await b.analyse()  # to its summary: a later reply must not race it
        since = len(tg.sent)
        tg.click(TRADER, await b.signal_message("GBPUSD"), button="✅ Approve")
        await tg.wait_for_message(lambda m: m.body.startswith("📥 GBPUSD"), since=since, timeout=20)  # its fill
        stopped = await b.command("/stop")
        assert stopped.body.startswith("⏸ Stopped") and "1 open position" in stopped.body
        assert [label for label, _ in stopped.buttons] == ["Close these 1", "Keep them open"]
        # Resumed, a second position opens after that confirmation: its button closes only the one it listed.
        await b.command("/resume")
        since = len(tg.sent)
        tg.click(TRADER, await b.signal_message("XAUUSD"), button="✅ Approve")
        await tg.wait_for_message(lambda m: m.body.startswith("📥 XAUUSD"), since=since, timeout=20)  # later replies
        assert b.query("SELECT COUNT(*) FROM trades") == [(2,)]  # must not race the fill message
        since = len(tg.sent)
        tg.click(TRADER, stopped, button="Close these 1")
        done = await tg.wait_for_message(lambda m: m.body.startswith("Closed "), since=since, timeout=20)
        assert done.body == "Closed 1 of 1 listed position."
        await tg.wait_for_message(lambda m: "GBPUSD" in m.body and "closed (manual)" in m.body, since=since, timeout=20)
        assert b.query("SELECT symbol FROM trades WHERE exit_time IS NULL") == [("XAUUSD",)]
        since = len(tg.sent)  # after the close's own message: the next reply is the second press's
        tg.click(TRADER, stopped, data=stopped.buttons[0][1], allow_stale=True)
        again = await tg.wait_for_message(lambda m: m.chat_id == TRADER, since=since, timeout=20)
        assert again.body == "This button is no longer valid."
        assert b.query("SELECT symbol FROM trades WHERE exit_time IS NULL") == [("XAUUSD",)]
        # The other button leaves them open and says so in place.
        stopped = await b.command("/stop")
        press = tg.click(TRADER, stopped, button="Keep them open")
        kept = await tg.wait_for_edit(stopped.chat_id, stopped.message_id, timeout=20)
        assert kept.body == "Open positions kept." and (await tg.wait_for_answer(press)).text is None
        assert b.query("SELECT symbol FROM trades WHERE exit_time IS NULL") == [("XAUUSD",)]
