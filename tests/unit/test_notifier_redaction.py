"""The notifier masks secrets before a message reaches the outbox, so neither the database nor a chat sees them."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import pytest

from bot.telegram.notifier import Notifier
from data.outbox import OutboxItem, OutboxKind
from data.redaction import REDACTED, Redactor
from data.sqlite.store import SqliteStore
from tests.fakes.clock import SteppingClock

NOW = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)
CHATS = (1001, 1002)
OANDA = "0123456789abcdef0123456789abcdef-fedcba9876543210fedcba9876543210"
UNCONFIGURED = "7654321:AAE_unconfiguredBotToken-abcdefghijklmno"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "t.db")
    try:
        yield opened
    finally:
        await opened.close()


async def outbox(store: SqliteStore) -> list[OutboxItem]:
    return await store.due_messages(NOW + timedelta(days=1), limit=100)


def raw_database(path: Path) -> str:
    """Every outbox row as stored on disk."""
    with sqlite3.connect(path) as db:
        return "\n".join(str(row) for row in db.execute("SELECT * FROM outbox"))


async def test_an_internal_error_message_is_stored_with_the_token_masked(store: SqliteStore) -> None:
    woken: list[bool] = []
    notifier = Notifier(store, CHATS, {}, SteppingClock(NOW), lambda: woken.append(True), redactor=Redactor([OANDA]))
    exc = RuntimeError(f"401 from https://api-fxpractice.oanda.com: Authorization: Bearer {OANDA} rejected")
    await notifier.text(f"⚠️ internal error: {escape(type(exc).__name__)}: {escape(str(exc))[:300]}")
    await notifier.text(f"token {OANDA} again", buttons=[[["Retry", f"retry:{OANDA}"]]])
    items = await outbox(store)
    assert [(i.kind, i.chat_id) for i in items] == [(OutboxKind.TEXT, c) for c in CHATS] * 2
    assert items[0].payload["text"] == (
        f"⚠️ internal error: RuntimeError: 401 from https://api-fxpractice.oanda.com: "
        f"Authorization: Bearer {REDACTED} rejected"
    )
    assert items[2].payload["text"] == f"token {REDACTED} again"
    assert items[2].payload["buttons"] == [[["Retry", f"retry:{OANDA}"]]]  # callback data is not text: kept as given
    assert OANDA not in "".join(str(i.payload["text"]) for i in items)
    assert woken == [True, True]


async def test_the_database_never_holds_the_secret_in_a_text(store: SqliteStore, tmp_path: Path) -> None:
    notifier = Notifier(store, CHATS[:1], {}, SteppingClock(NOW), redactor=Redactor([OANDA]))
    await notifier.text(f"failed: {OANDA}")
    assert OANDA not in raw_database(tmp_path / "t.db")
    assert REDACTED in raw_database(tmp_path / "t.db")


async def test_without_a_redactor_token_shapes_are_still_masked(store: SqliteStore) -> None:
    notifier = Notifier(store, CHATS[:1], {}, SteppingClock(NOW))
    await notifier.text(f"GET /bot{UNCONFIGURED}/getMe failed; <b>entry</b> 1.2345 at 09:40:00")
    [item] = await outbox(store)
    assert item.payload["text"] == f"GET /bot{REDACTED}/getMe failed; <b>entry</b> 1.2345 at 09:40:00"
