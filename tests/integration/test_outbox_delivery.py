"""The outbox over the fake Bot API (real python-telegram-bot, real HTTP, a real SQLite file): nothing the bot
must say is silently dropped, and no copy of a decided signal keeps live buttons.

- a digest of 40 signals goes out in pages that each fit a message, every signal with its buttons;
- a text longer than a message goes out in parts; HTML Telegram cannot parse goes out as plain text;
- an item Telegram refuses for good is closed with a one-line notice to the chat;
- a signal decided while a copy of it was on its way is edited right after that copy arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from telegram import Bot

from bot.ops.clock import WallClock
from bot.telegram.messages import MAX_MESSAGE_CHARS
from bot.telegram.notifier import Notifier
from bot.telegram.sender import OutboxSender
from data.outbox import OutboxKind
from data.sqlite.store import SqliteStore
from engine.catalog import default_instrument
from engine.domain import Interval, QualityScore, ScoredSetup, Setup, Side, SignalStatus
from tests.fakes.telegram_server import FakeTelegram, fast_request

TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"
CHAT = 42
AT = datetime(2025, 6, 12, 9, 0, tzinfo=UTC)


def setups(n: int) -> list[ScoredSetup]:
    """n distinct GBPUSD long setups on consecutive hourly bars."""
    reasons = ("4h trend up: EMA50 1.35258 > EMA200 1.34082", "pulled back to EMA20 1.35548", "RSI 52 crossed 50")
    return [
        ScoredSetup(
            Setup(
                "trend_pullback",
                "GBPUSD",
                Side.LONG,
                Decimal("1.35651") + Decimal(k) / 100000,
                Decimal("1.35347"),
                (Decimal("1.36259"),),
                AT - timedelta(hours=k),
                Interval.H1,
                reasons,
            ),
            QualityScore(74.3 - k / 10, ()),
        )
        for k in range(n)
    ]


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with await SqliteStore.open(tmp_path / "bot.db") as opened:
        yield opened


async def pending(store: SqliteStore, n: int) -> list[str]:
    """Store n signals as offered (pending) and return their ids, best first."""
    found = setups(n)
    run = await store.start_run(AT, AT, "test", ["GBPUSD"])
    await store.finish_run(run, AT, found, [], [])
    for s in found:
        expires = s.setup.bar_time + timedelta(hours=3)
        await store.transition(
            s.setup.signal_id, SignalStatus.NEW, SignalStatus.PENDING, AT, quantity=Decimal("0.33"), expires_at=expires
        )
    return [s.setup.signal_id for s in found]


async def drain(tg: FakeTelegram, store: SqliteStore, sender: OutboxSender) -> None:
    """Run the sender until the outbox is empty."""
    sender.start()
    try:
        for _ in range(400):
            if await store.outbox_size() == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the outbox did not empty")
    finally:
        await sender.stop()


def bot_for(tg: FakeTelegram) -> Bot:
    return Bot(TOKEN, base_url=tg.base_url, request=fast_request(), get_updates_request=fast_request())


async def test_a_digest_of_40_signals_arrives_in_pages_with_every_signal_and_its_buttons(
    tg: FakeTelegram, store: SqliteStore
) -> None:
    ids = await pending(store, 40)
    records = [r for r in [await store.signal(i) for i in ids] if r is not None]
    notifier = Notifier(store, [CHAT], {"GBPUSD": default_instrument("GBPUSD")}, WallClock())
    await notifier.signals(records)
    async with bot_for(tg) as bot:
        await drain(tg, store, OutboxSender(bot, store, min_interval=0))
    sent = [m for m in tg.sent if m.chat_id == CHAT]
    assert sent[0].body.startswith("40 new signals in") and all(len(m.source) <= MAX_MESSAGE_CHARS for m in sent)
    shown = [data.split(":")[1] for m in sent for _, data in m.buttons if data.startswith("ap:")]
    assert shown == ids  # every one, best first, once
    assert not [c for c in tg.calls_to("sendMessage") if c.status != 200]


async def test_long_and_unparsable_texts_are_delivered_and_a_refused_one_is_told(
    tg: FakeTelegram, store: SqliteStore
) -> None:
    report = "\n".join(f"<b>strategy {k}</b>: 12 trades · win 42% · PF 1.10 · expectancy +0.05R" for k in range(150))
    await store.enqueue(OutboxKind.TEXT, CHAT, {"text": report}, AT)  # queued whole, e.g. by an older version
    await store.enqueue(OutboxKind.TEXT, CHAT, {"text": "<b>unclosed bold and a < sign"}, AT)
    await store.enqueue(OutboxKind.EDIT, CHAT, {"text": "edit of a message that is not there", "message_id": 999}, AT)
    bad_button = [[["Approve", "x" * 65]]]  # callback data over Telegram's 64 bytes: refused for good
    await store.enqueue(OutboxKind.TEXT, CHAT, {"text": "with a bad button", "buttons": bad_button}, AT)
    async with bot_for(tg) as bot:
        await drain(tg, store, OutboxSender(bot, store, min_interval=0))
    texts = [m.body for m in tg.sent if m.chat_id == CHAT]
    assert "".join(t for t in texts if t.startswith("strategy")).count("strategy ") == 150
    assert "unclosed bold and a < sign" in texts  # as plain text: nothing lost
    [notice] = [t for t in texts if t.startswith("⚠️ A message could not be delivered")]  # the lost edit: logged
    assert "Button_data_invalid" in notice or "BUTTON_DATA_INVALID" in notice.upper()


async def test_a_copy_delivered_after_the_decision_loses_its_buttons(tg: FakeTelegram, store: SqliteStore) -> None:
    [signal_id] = await pending(store, 1)
    record = await store.signal(signal_id)
    assert record is not None
    notifier = Notifier(store, [CHAT, CHAT + 1], {"GBPUSD": default_instrument("GBPUSD")}, WallClock())
    await notifier.signals([record])
    # Decided in the first chat before the second chat's copy went out: the refresh saw no message to edit there.
    await store.transition(signal_id, SignalStatus.PENDING, SignalStatus.REJECTED, AT, by=CHAT)
    await notifier.refresh(signal_id)
    async with bot_for(tg) as bot:
        await drain(tg, store, OutboxSender(bot, store, min_interval=0, after_signals=notifier.refresh_decided))
    for chat in (CHAT, CHAT + 1):
        [copy] = [m for m in tg.sent if m.chat_id == chat]
        final = tg.message(chat, copy.message_id)
        assert final.buttons == [] and "rejected" in final.body


def png() -> bytes:
    """A real chart's PNG (small), drawn as the chart worker draws."""
    import numpy as np  # noqa: PLC0415

    from bot.charts.render import render_png  # noqa: PLC0415
    from bot.charts.spec import ChartSpec  # noqa: PLC0415

    close = 1.35 + np.arange(20) / 1000
    spec = ChartSpec("GBPUSD 1h", "UTC", np.arange(20, dtype=np.int64) * 3_600_000_000_000, close, close, close, close)
    return render_png(spec)


async def charted_signal(store: SqliteStore, charts: Path) -> tuple[str, Notifier]:
    """One pending signal queued with its chart (kept in `charts`); its id and the notifier that queued it."""
    [signal_id] = await pending(store, 1)
    record = await store.signal(signal_id)
    assert record is not None
    notifier = Notifier(store, [CHAT], {"GBPUSD": default_instrument("GBPUSD")}, WallClock(), charts_dir=charts)
    await notifier.signals([record], {signal_id: png()})
    return signal_id, notifier


async def test_a_charted_signal_is_a_photo_with_its_buttons_and_its_decision_edits_the_caption(
    tg: FakeTelegram, store: SqliteStore, tmp_path: Path
) -> None:
    signal_id, notifier = await charted_signal(store, tmp_path)
    async with bot_for(tg) as bot:
        await drain(tg, store, OutboxSender(bot, store, min_interval=0))
        [photo] = [m for m in tg.sent if m.chat_id == CHAT]
        assert photo.photo and "GBPUSD" in photo.body and [label for label, _ in photo.buttons][:1] == ["✅ Approve"]
        assert await store.signal_messages(signal_id) == [(CHAT, photo.message_id)]
        assert await store.transition(signal_id, SignalStatus.PENDING, SignalStatus.REJECTED, AT, by=7)
        await notifier.refresh(signal_id)
        await drain(tg, store, OutboxSender(bot, store, min_interval=0))
    edited = tg.message(CHAT, photo.message_id)
    assert "rejected by" in edited.body and edited.buttons == [] and edited.photo  # the caption, not a new message
    assert [c.status for c in tg.calls_to("editMessageText")] == [400]  # a photo has no text: its caption instead
    assert [c.status for c in tg.calls_to("editMessageCaption")] == [200]


async def test_a_chart_file_that_is_gone_leaves_the_signal_as_text_on_time(
    tg: FakeTelegram, store: SqliteStore, tmp_path: Path
) -> None:
    await charted_signal(store, tmp_path)
    for chart in tmp_path.glob("*.png"):
        chart.unlink()  # e.g. a full disk was cleaned, or the folder was lost in a restore
    async with bot_for(tg) as bot:
        await drain(tg, store, OutboxSender(bot, store, min_interval=0))
    [text] = [m for m in tg.sent if m.chat_id == CHAT]
    assert not text.photo and "GBPUSD" in text.body and text.buttons
    assert tg.calls_to("sendPhoto") == []
