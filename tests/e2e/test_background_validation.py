"""A first start validates the watchlist in a worker process; signals say their status until then and after.

The real bot (python-telegram-bot against the fake Bot API server) on the shared CSV data, its clock at START.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.services.configure import system_book
from tests.e2e.test_bot import CONFIG, START, TOKEN, TRADER, ManualMonotonic, bot, bot_env
from tests.fakes.telegram_server import FakeTelegram

IN_BACKGROUND = CONFIG.format(interval=0.05).replace(
    "validate_in_background = false  # the tests that need a baseline store one", "validate_in_background = true"
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield bot_env(tmp_path, monkeypatch, IN_BACKGROUND)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


async def test_a_first_start_validates_every_traded_system_in_the_background_and_says_so(
    tg: FakeTelegram, env: Path
) -> None:
    specs = system_book(load_settings()).specs
    assert len(specs) == 4  # trend_pullback and pattern_reversal on GBPUSD and XAUUSD
    mono = ManualMonotonic()
    async with bot(tg, env, mono) as b:
        finished = await tg.wait_for_message(lambda m: m.body.startswith("✅ Validation finished"), timeout=60)
        assert finished.chat_id == TRADER and "of 4 systems passed the pre-deploy gate" in finished.body
        rows = b.query("SELECT strategy, symbol, fingerprint, data_to, system FROM baselines ORDER BY id")
        assert {(r[0], r[1]) for r in rows} == set(specs) and len(rows) == 4
        for strategy, symbol, fingerprint, data_to, system in rows:
            assert fingerprint == specs[(str(strategy), str(symbol))].fingerprint  # the systems the bot trades
            assert json.loads(str(system))["params"] == specs[(str(strategy), str(symbol))].params
            assert datetime.fromisoformat(str(data_to).replace("Z", "+00:00")) <= START  # no data from its future
        status = await b.command("/status")
        assert "validation:" in status.body and "of 4 traded systems" in status.body
        assert "background validation finished" in status.body

    async with bot(tg, env, mono) as b:  # a restart finds every system with a current baseline: nothing to do
        await b.command("/status")
        assert b.query("SELECT COUNT(*) FROM baselines") == [(4,)]
        told = [m for m in tg.sent if m.chat_id == TRADER and m.body.startswith("✅ Validation finished")]
        assert len(told) == 1
