"""The reporting commands, the audit trail and /chart through the real PTB against the Bot API server.

One paper position (GBPUSD, approved) and one outside trade the trader reported (XAUUSD, +120.50 USD) on the
shared data at 2025-06-12T09:40Z; every report is read as the trader's phone shows it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.test_bot import CONFIG, TOKEN, TRADER, Running, bot, bot_env
from tests.fakes.telegram_server import FakeTelegram, SentMessage

PHONE = 40  # monospace columns a phone shows without wrapping


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return bot_env(tmp_path, monkeypatch, CONFIG.format(interval=0.05))


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


def table_lines(message: SentMessage) -> list[str]:
    """The lines of the message's <pre> tables."""
    pre = [e for e in message.entities if e.get("type") == "pre"]
    text = message.body
    return [line for e in pre for line in text[e["offset"] : e["offset"] + e["length"]].splitlines()]


async def position_and_outside_trade(b: Running, tg: FakeTelegram) -> tuple[str, str]:
    await b.analyse()
    gbp = await b.signal_message("GBPUSD")
    xau = await b.signal_message("XAUUSD")
    tg.click(TRADER, gbp, button="✅ Approve")
    await tg.wait_for_message(lambda m: "filled" in m.body and "GBPUSD" in m.body, since=0, timeout=20)
    xau_id = xau.buttons[0][1].split(":")[1]  # type: ignore[union-attr]
    gbp_id = gbp.buttons[0][1].split(":")[1]  # type: ignore[union-attr]
    reported = await b.command(f"/report {xau_id} win 120.50")
    assert reported.body == f"Recorded win of 120.50 for {xau_id}."
    return gbp_id, xau_id


async def test_the_reports_fit_a_phone_and_say_what_they_measure(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        gbp_id, xau_id = await position_and_outside_trade(b, tg)

        profit = await b.command("/profit")
        assert profit.body.startswith("Profit (USD since 2025-06-12)")
        assert "closed P&L     +120.50" in profit.body and "open positions       1" in profit.body
        assert "expectancy      +1.60R" in profit.body and "best XAUUSD +1.60R" in profit.body
        assert "1 closed trade: too few to judge the edge" in profit.body  # singular, and how sure it is

        daily = await b.command("/daily 3")
        assert "Thu 12 Jun      1    1 +120.50" in daily.body and "Tue 10 Jun      0    0   +0.00" in daily.body
        weekly = await b.command("/weekly 2")
        assert "2025-W24      1    1 +120.50" in weekly.body
        monthly = await b.command("/monthly")
        assert "Jun 2025      1    1 +120.50" in monthly.body

        performance = await b.command("/performance")
        assert (
            "XAUUSD 1 100% +1.60R +120.50" in performance.body and "validation: XAUUSD unvalidated" in performance.body
        )
        trades = await b.command("/trades")
        assert "XAUUSD L" in trades.body and "external" in trades.body and "+120.50" in trades.body

        balance = await b.command("/balance")
        assert "equity         10,000.00" in balance.body  # the outside trade is not in the bot's account
        assert "open positions         1" in balance.body and "leverage           3.66x" in balance.body
        count = await b.command("/count")
        assert "open           1 / 5" in count.body and "entries today 1 / 10" in count.body

        for message in (profit, daily, weekly, monthly, performance, trades, balance, count):
            lines = table_lines(message)
            assert lines and max(map(len, lines)) <= PHONE, lines

        usage = await b.command("/daily lots")
        assert usage.body == "usage: /daily [n] — n is a whole number from 1 to 60 (default 7)"
        assert gbp_id != xau_id


async def test_version_config_logs_and_the_audit_trail(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        gbp_id, _ = await position_and_outside_trade(b, tg)
        version = await b.command("/version")
        assert version.body.startswith("tradebot 0.1.0, running since 2025-06-12 09:40 UTC")

        config = await b.command("/show_config")
        assert "telegram_bot_token = set (masked)" in config.body and TOKEN not in config.body
        assert "sha256" in config.body
        last = await tg.wait_for_message(lambda m: "web.port = 8766" in m.body, since=0, timeout=20)  # the last part
        assert 'bot.mode = "manual"' in "".join(m.body for m in tg.sent if m.chat_id == TRADER)
        assert all(TOKEN not in m.body for m in tg.sent) and last.chat_id == TRADER

        logging.getLogger("tradebot.test").warning("a broker answered 503 for %s", TOKEN)
        logs = await b.command("/logs 5")
        assert "a broker answered 503 for" in logs.body and TOKEN not in logs.body

        audit = await b.command("/audit 30")
        body = audit.body
        assert f"signal_approved · Tester · {gbp_id}" in body and "s after the offer" in body
        assert f"order_filled · bot · {gbp_id}" in body and "signal_offered · bot" in body
        assert "config_loaded · bot" in body
        stopped = await b.command("/stop")
        assert "Stopped" in stopped.body
        audit = await b.command("/audit 3")
        assert "setting_changed · Tester · paused paused: no new entries" in audit.body


async def test_chart_draws_the_symbol_with_its_open_position(tg: FakeTelegram, env: Path) -> None:
    async with bot(tg, env) as b:
        await position_and_outside_trade(b, tg)
        since = len(tg.sent)
        tg.user_message(TRADER, "/chart GBPUSD")
        photo = await tg.wait_for_message(lambda m: bool(m.photo) and "GBPUSD" in m.body, since=since, timeout=30)
        assert photo.body.startswith("GBPUSD 1h · 1 open position · last bar 2025-06-12 08:00 UTC")
        assert tg.image(photo.chat_id, photo.message_id)[:8] == b"\x89PNG\r\n\x1a\n"  # type: ignore[index]
        assert tg.uploaded_bytes >= len(tg.image(photo.chat_id, photo.message_id) or b"") > 0
        usage = await b.command("/chart EURUSD")
        assert usage.body == "usage: /chart SYMBOL — symbols: GBPUSD, XAUUSD"
