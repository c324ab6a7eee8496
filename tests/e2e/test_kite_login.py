"""The daily Kite login from Telegram, end to end: the real bot, a fake Bot API server and a fake Kite server.

Morning reminder before the NSE open → /login sends the link → /login <redirect address> exchanges the token,
deletes the owner's message, confirms with the account name and funds → the session survives a restart in a
0600 file → /status says so. The token is never in a message, the database or the log.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.ops.clock import BotClock
from bot.telegram.app import serve
from tests.e2e.test_bot import CONFIG, PARTNER, TOKEN, TRADER, ManualMonotonic, Running, bot_env
from tests.fakes.kite_server import API_KEY, API_SECRET, FakeKite, Route
from tests.fakes.telegram_server import FakeTelegram

MORNING = datetime(2025, 6, 12, 2, 50, tzinfo=UTC)  # Thursday 08:20 IST: 55 minutes before the NSE open


@pytest.fixture
async def kite() -> AsyncIterator[FakeKite]:
    async with FakeKite() as server:
        yield server


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kite: FakeKite) -> Iterator[Path]:
    config = CONFIG.format(interval=0.05) + (
        f'\n[broker]\nnse = "kite"\nkite_api_key = "{API_KEY}"\nkite_base_url = "{kite.base_url}"\n'
        "kite_reminder_minutes = 45\n"
    )
    folder = bot_env(tmp_path, monkeypatch, config)
    monkeypatch.setenv("KITE_API_SECRET", API_SECRET)
    yield folder


@asynccontextmanager
async def bot(tg: FakeTelegram, folder: Path, mono: ManualMonotonic) -> AsyncIterator[Running]:
    os.environ["TELEGRAM_API_BASE_URL"] = tg.base_url
    stop = asyncio.Event()
    task = asyncio.create_task(serve(load_settings(), stop, BotClock(MORNING, 1.0, monotonic=mono)))
    try:
        await tg.wait_for_polling(timeout=20)
        yield Running(tg, mono, folder / "bot.db")
    finally:
        stop.set()
        assert await asyncio.wait_for(task, timeout=10) == 0


async def test_reminder_login_confirmation_and_a_session_that_survives_a_restart(
    tg: FakeTelegram, kite: FakeKite, env: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    mono = ManualMonotonic()
    async with bot(tg, env, mono) as b:
        status = await b.command("/status")
        assert "kite: no session today" in status.body
        b.advance(timedelta(minutes=15))  # 08:35 IST: inside the reminder window
        reminder = await tg.wait_for_message(lambda m: "no session for today" in m.body, since=0, timeout=20)
        assert "Log in with /login" in reminder.body and "09:15" in reminder.body
        told = lambda m: m.chat_id == PARTNER and "no session for today" in m.body  # noqa: E731
        await tg.wait_for_message(told, since=0, timeout=20)  # every chat has it before the partner asks
        refused = await b.command("/login", user=PARTNER)
        assert refused.body == "Only the owner may log in to the broker."
        link = await b.command("/login")
        [url] = [e["url"] for e in link.entities if e.get("type") == "text_link"]
        assert url == f"https://kite.zerodha.com/connect/login?v=3&api_key={API_KEY}"
        assert "/login <that address>" in link.body
        token = kite.issue_request_token("Rq7Tk0123456789")
        redirect = f"https://example.com/cb?action=login&type=login&status=success&request_token={token}"
        done = await b.command(f"/login {redirect}")
        assert "logged in as Asha Rao (AB1234)" in done.body and "Funds available: 500,000.00" in done.body
        assert tg.deleted_user_messages and tg.deleted_user_messages[-1][0] == TRADER
        assert len(kite.requests_for(Route.SESSION)) == 1
        status = await b.command("/status")
        assert "kite: logged in as Asha Rao" in status.body
    session_file = env / "kite-session.json"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    async with bot(tg, env, mono) as b:  # a restart the same day: no new login needed
        status = await b.command("/status")
        assert "kite: logged in as Asha Rao" in status.body
    assert len(kite.requests_for(Route.SESSION)) == 1
    texts = " ".join(m.body for m in tg.sent)
    dump = b"".join(p.read_bytes() for p in env.glob("bot.db*"))
    out, err = capfd.readouterr()
    for secret in (kite.access_token, API_SECRET):
        assert secret not in texts and secret.encode() not in dump and secret not in out + err
