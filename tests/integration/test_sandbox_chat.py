"""The sandbox chat page's HTTP side: its page and script, the state, and refusals of forged or bad posts."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from bot.cli.sandbox import duration
from bot.sandbox.botapi import BotApiServer
from bot.sandbox.chat import SANDBOX_USER, ChatPage


@pytest.fixture
async def page() -> AsyncIterator[tuple[ChatPage, BotApiServer]]:
    async with BotApiServer() as server:
        chat = await ChatPage(server, port=0, title="tradebot · sandbox").start()
        yield chat, server
        await chat.stop()


async def test_the_page_carries_its_csrf_token_and_a_post_without_it_changes_nothing(
    page: tuple[ChatPage, BotApiServer],
) -> None:
    chat, server = page
    async with httpx.AsyncClient(base_url=chat.url) as client:
        html = (await client.get("/")).text
        assert "SANDBOX" in html and "/static/chat.js" in html
        token = re.search(r'name="csrf-token" content="([^"]+)"', html)
        assert token is not None and token.group(1) == chat.csrf
        assert (await client.get("/static/chat.js")).status_code == 200
        forged = await client.post("/api/send", json={"text": "/stop"})
        assert forged.status_code == 403 and server.pending_updates == []
        wrong = await client.post("/api/send", json={"text": "/stop"}, headers={"X-CSRF-Token": "guess"})
        assert wrong.status_code == 403 and server.pending_updates == []
        headers = {"X-CSRF-Token": chat.csrf}
        assert (await client.post("/api/send", json={"text": ""}, headers=headers)).status_code == 400
        assert (await client.post("/api/send", content=b"not json", headers=headers)).status_code == 400
        assert (await client.post("/api/click", json={"message_id": "x"}, headers=headers)).status_code == 400
        sent = await client.post("/api/send", json={"text": "/start"}, headers=headers)
        assert sent.status_code == 200
        [update] = server.pending_updates
        assert update["message"]["text"] == "/start" and update["message"]["from"]["id"] == SANDBOX_USER
        state = (await client.get("/api/state")).json()
        assert [line["text"] for line in state["lines"]] == ["/start"]


def test_replay_durations() -> None:
    assert duration("5d") == timedelta(days=5) and duration("90m") == timedelta(minutes=90)
    with pytest.raises(ValueError, match="a duration is a number and m, h or d"):
        duration("5 days")


def tiny_png() -> bytes:
    """A valid 2x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\xff\x00\x00" * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


async def test_a_photo_the_bot_uploads_is_shown_in_the_page(page: tuple[ChatPage, BotApiServer]) -> None:
    chat, server = page
    png = tiny_png()
    async with httpx.AsyncClient() as bot:  # the bot's side: sendPhoto with an upload, as PTB sends it
        sent = await bot.post(
            f"{server.base_url}{server.token}/sendPhoto",
            data={"chat_id": str(SANDBOX_USER), "caption": "<b>calibration</b>", "parse_mode": "HTML"},
            files={"photo": ("chart.png", png, "image/png")},
        )
    assert sent.json()["ok"], sent.text
    async with httpx.AsyncClient(base_url=chat.url) as client:
        [line] = (await client.get("/api/state")).json()["lines"]
        assert line["image"] == f"/api/photo/{line['message_id']}" and "<b>calibration</b>" in line["html"]
        shown = await client.get(line["image"])
        assert shown.status_code == 200 and shown.content == png and shown.headers["content-type"] == "image/png"
        assert (await client.get("/api/photo/999")).status_code == 404
