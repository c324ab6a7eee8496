"""The NIFTY weekly-zone system live, end to end on the bot clock: the real bot, a fake Bot API server and a
fake Kite server. Morning reminder → /login → the 15:15 IST bar's S3 signal offered as a call spread →
Approve → hedge bought, then main sold at Kite → restarts across the week → a new login on expiry day → the
expiry exit closes the main leg, then the hedge → the outcome recorded with all four fills."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.ops.clock import BotClock
from bot.telegram.app import serve
from tests.e2e.test_bot import CONFIG, TOKEN, TRADER, bot_env
from tests.fakes.kite_server import API_KEY, API_SECRET, FakeKite
from tests.fakes.telegram_server import FakeTelegram, SentMessage

MAIN, HEDGE = "NIFTY2531322650CE", "NIFTY2531322850CE"
NIFTY = """
[[watchlist]]
symbol = "NIFTY50"
ticker = "^NSEI"
asset_class = "index"
interval = "5m"
tick_size = "0.05"
pip_size = "0.05"
lot_size = "1"
contract_size = "1"
calendar = "XNSE"
spread = "0.5"
quote_currency = "INR"

[weekly_zones]
enabled = true
"""


@pytest.fixture
async def kite() -> AsyncIterator[FakeKite]:
    async with FakeKite() as server:
        server.add_instrument(MAIN, "2025-03-13", 22650, "CE")
        server.add_instrument(HEDGE, "2025-03-13", 22850, "CE")
        server.set_quote(f"NFO:{MAIN}", "41.00", "41.50")
        server.set_quote(f"NFO:{HEDGE}", "9.10", "9.40")
        yield server


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kite: FakeKite) -> Iterator[Path]:
    broker = f'\n[broker]\nnse = "kite"\nkite_api_key = "{API_KEY}"\nkite_base_url = "{kite.base_url}"\n'
    folder = bot_env(tmp_path, monkeypatch, CONFIG.format(interval=0.05) + NIFTY + broker)
    monkeypatch.setenv("KITE_API_SECRET", API_SECRET)
    yield folder


@asynccontextmanager
async def bot(tg: FakeTelegram, start: datetime, speed: float) -> AsyncIterator[None]:
    os.environ["TELEGRAM_API_BASE_URL"] = tg.base_url
    stop = asyncio.Event()
    task = asyncio.create_task(serve(load_settings(), stop, BotClock(start, speed)))
    try:
        await tg.wait_for_polling(timeout=20)
        yield
    finally:
        stop.set()
        assert await asyncio.wait_for(task, timeout=15) == 0


async def login(tg: FakeTelegram, kite: FakeKite, token: str) -> None:
    since = len(tg.sent)
    tg.user_message(
        TRADER, f"/login https://127.0.0.1/kite?status=success&request_token={kite.issue_request_token(token)}"
    )
    await tg.wait_for_message(lambda m: "logged in as Asha Rao" in m.body, since=since, timeout=20)


def spread_message(tg: FakeTelegram, text: str, since: int = 0, timeout: float = 30) -> asyncio.Future[SentMessage]:
    return asyncio.ensure_future(tg.wait_for_message(lambda m: text in m.body, since=since, timeout=timeout))


async def test_a_weekly_zone_spread_from_login_to_its_expiry_exit(tg: FakeTelegram, kite: FakeKite, env: Path) -> None:
    async with bot(tg, datetime(2025, 3, 10, 3, 0, tzinfo=UTC), 1.0):  # 08:30 IST: inside the reminder window
        await tg.wait_for_message(lambda m: "no session for today" in m.body, timeout=20)
        await login(tg, kite, "MonMorning01")
    async with bot(tg, datetime(2025, 3, 10, 9, 44, tzinfo=UTC), 60.0):  # the same day: the session is restored
        offer = await spread_message(tg, "weekly zones S3")
        assert "resistance hold" in offer.body and "close-only stop 22633.80" in offer.body
        assert f"buy {HEDGE} (hedge, first)" in offer.body and f"sell {MAIN}" in offer.body
        assert "1 lot(s) × 75" in offer.body and "expiry Thu 13 Mar" in offer.body
        since = len(tg.sent)
        query = tg.click(TRADER, offer, button="✅ Approve")
        assert (await tg.wait_for_answer(query)).text == "Approving: hedge first…"
        opened = await spread_message(tg, "open:", since=since)
        assert opened.body.index(HEDGE) < opened.body.index(MAIN)  # bought the hedge, then sold the main leg
    assert [(o["tradingsymbol"], o["transaction_type"]) for o in kite.orders] == [(HEDGE, "BUY"), (MAIN, "SELL")]
    kite.expire_session()  # 06:00 IST the next morning
    async with bot(tg, datetime(2025, 3, 13, 9, 59, tzinfo=UTC), 10.0):  # expiry day: log in again, then 15:30
        await login(tg, kite, "ThuMorning01")
        closed = await spread_message(tg, "closed: expiry", timeout=40)
        assert "22383.30" in closed.body and "+86.35 points" in closed.body
    assert [(o["tradingsymbol"], o["transaction_type"]) for o in kite.orders][2:] == [(MAIN, "BUY"), (HEDGE, "SELL")]
    with sqlite3.connect(env / "bot.db") as db:
        [(status,)] = db.execute("SELECT status FROM spreads").fetchall()
        assert status == "closed" and db.execute("SELECT COUNT(*) FROM spread_fills").fetchone() == (4,)
    assert all(p["quantity"] == 0 for p in kite.positions)
