"""The sandbox chat page's HTTP side: its page and script, the state, and refusals of forged or bad posts."""

from __future__ import annotations

import re
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
