"""The web dashboard over a real runtime: what it shows, its token when not on loopback, CSRF, the emergency stop."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bot.bootstrap import open_runtime
from bot.config import load_settings
from bot.ops.clock import BotClock
from bot.sandbox.listen import listen
from bot.services.dashboard import Dashboard
from bot.services.runtime import BotRuntime
from bot.web.server import DashboardSite, is_loopback, issue_token, token_digests
from engine.trading import TradeKind
from tests.support import require_market_dir

AS_OF = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[BotRuntime]:
    settings = load_settings(
        {}, db_path=tmp_path / "bot.db", data_source=f"csv:{require_market_dir()}", TELEGRAM_ALLOWED_USERS="42"
    )
    async with open_runtime(settings, BotClock(AS_OF)) as rt:
        yield rt


async def serve(site: DashboardSite) -> tuple[web.AppRunner, str]:
    app = web.Application()
    site.add_routes(app)
    runner, port = await listen(app)
    return runner, f"http://127.0.0.1:{port}"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_the_dashboard_shows_the_book_and_its_emergency_stop_pauses_and_closes(runtime: BotRuntime) -> None:
    _, decisions = await runtime.analyse()
    signal = next(d.signal_id for d in decisions)
    assert (await runtime.desk.approve(signal, 42)).message  # one open paper position
    runner, base = await serve(DashboardSite(Dashboard(runtime), runtime.store, require_token=False))
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            page = await client.get("/dashboard")
            assert page.status_code == 200
            html = page.text
            for section in ('id="positions"', 'id="equity"', 'id="signals"', 'id="systems"', 'id="protections"'):
                assert section in html
            assert signal in html and "GBPUSD" in html and "▶️ running" in html
            forged = await client.post("/dashboard/stop", data={"confirm": "STOP"})
            assert forged.status_code == 403 and not await runtime.state.paused()
            unconfirmed = await client.post("/dashboard/stop", data={"csrf": csrf_of(html), "confirm": "stop?"})
            assert unconfirmed.status_code == 400 and not await runtime.state.paused()
            done = await client.post("/dashboard/stop", data={"csrf": csrf_of(html), "confirm": "STOP"})
            assert done.status_code == 303 and await runtime.state.paused()
            assert await runtime.store.open_trades([TradeKind.PAPER]) == []
            after = await client.get(done.headers["location"])
            assert "⏸ paused" in after.text and "Closed 1 of 1 listed position" in after.text
    finally:
        await runner.cleanup()


async def test_off_loopback_every_request_needs_a_token_and_a_stranger_changes_nothing(runtime: BotRuntime) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    token = await issue_token(runtime.store)
    assert token not in str(await token_digests(runtime.store))  # only its digest is kept
    runner, base = await serve(DashboardSite(Dashboard(runtime), runtime.store, require_token=True))
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/dashboard")).status_code == 401
            assert (await client.post("/dashboard/stop", data={"confirm": "STOP"})).status_code == 401
            assert (await client.get("/dashboard", headers={"Authorization": "Bearer nope"})).status_code == 401
            assert (await client.get("/dashboard/login", params={"token": "nope"})).status_code == 401
            assert not await runtime.state.paused()
            page = await client.get("/dashboard", headers={"Authorization": f"Bearer {token}"})
            assert page.status_code == 200 and token not in page.text
            login = await client.get("/dashboard/login", params={"token": token})
            assert login.status_code == 303 and "HttpOnly" in login.headers["set-cookie"]
            assert (await client.get("/dashboard")).status_code == 200  # the cookie now
    finally:
        await runner.cleanup()


def test_tradebot_web_token_prints_a_token_once_and_keeps_only_its_hash(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_"))}
    env["TRADEBOT_DB_PATH"] = str(tmp_path / "bot.db")
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "web", "token"],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.split(": ", 1)[1].split()[0]
    assert len(token) >= 40 and "Authorization header" in done.stdout
    with sqlite3.connect(tmp_path / "bot.db") as db:
        [(stored,)] = db.execute("SELECT value FROM bot_state WHERE key = 'web.token_hashes'").fetchall()
    assert token not in stored and len(stored) == len('[""]') + 64
