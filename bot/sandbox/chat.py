"""The sandbox's chat page: a browser view of the conversation with the bot on the embedded Bot API server.

Served on 127.0.0.1 by aiohttp in the bot's own event loop. The page (a Jinja2 template and one script, no
CDN) shows the bot's messages as Telegram would (its HTML, inline buttons, edits in place, photos as their
caption), the trader's own messages, and the command menu the bot set with `setMyCommands`. New and edited
messages arrive by server-sent events. Sending a message or pressing a button posts to this server, which
hands it to the Bot API server as the sandbox user's update: the bot cannot tell it from Telegram.

State-changing requests need the page's CSRF token (a random value rendered into the page, sent back in the
`X-CSRF-Token` header), so another site open in the same browser cannot post into the chat.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jinja2
from aiohttp import web

from bot.sandbox.botapi import BotApiServer
from bot.sandbox.botapi_state import SentMessage
from bot.sandbox.listen import listen

if TYPE_CHECKING:
    from bot.web.server import DashboardSite

HERE: Final = Path(__file__).parent
SANDBOX_USER: Final = 1001  # the sandbox trader's Telegram user id (a private chat has the user's id)
MAX_TEXT: Final = 4096
KEEPALIVE_SECONDS: Final = 15.0


@dataclass(frozen=True)
class UserLine:
    """A message the sandbox user sent, after the bot message with id `after` (messages share one id sequence)."""

    text: str
    after: int


class ChatPage:
    """The chat web page over one Bot API server, for one sandbox user."""

    def __init__(self, server: BotApiServer, *, host: str = "127.0.0.1", port: int = 8765, title: str) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.title = title
        self.csrf = secrets.token_urlsafe(32)
        self._lines: list[UserLine] = []
        self._runner: web.AppRunner | None = None
        self.site: DashboardSite | None = None  # the dashboard, once the bot's runtime is up
        self.notice: str | None = None  # the sandbox's own word in the chat (not the bot's), e.g. markets closed
        self.on_replay: Callable[[], None] | None = None  # offered with the notice: replay recent history
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> ChatPage:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/", self._page)
        app.router.add_get("/static/chat.js", self._script)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/events", self._events)
        app.router.add_post("/api/send", self._send)
        app.router.add_post("/api/click", self._click)
        app.router.add_get("/api/photo/{message_id}", self._photo)
        app.router.add_post("/api/replay", self._replay)
        app.router.add_get("/dashboard", self._dashboard_page)
        app.router.add_post("/dashboard/stop", self._dashboard_stop)
        self._runner, self.port = await listen(app, self.port, host=self.host, handler_cancellation=True)
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ---------------------------------------------------------------------------------------------- pages

    async def _page(self, request: web.Request) -> web.Response:
        html = self._templates.get_template("chat.html").render(title=self.title, csrf=self.csrf)
        return web.Response(text=html, content_type="text/html", headers=_NO_STORE)

    async def _script(self, request: web.Request) -> web.Response:
        return web.Response(text=(HERE / "static" / "chat.js").read_text(), content_type="application/javascript")

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot(), headers=_NO_STORE)

    def snapshot(self) -> dict[str, Any]:
        """Every line of the conversation, oldest first, and the command menu."""
        lines: list[dict[str, Any]] = [
            {"from": "user", "text": line.text, "order": line.after + 0.5, "id": f"u{i}"}
            for i, line in enumerate(self._lines)
        ]
        lines += [_bot_line(m) for m in self.server.messages_in(SANDBOX_USER)]
        lines.sort(key=lambda line: line["order"])
        commands = [{"command": c, "description": d} for c, d in self.server.commands]
        notice = None if self.notice is None else {"text": self.notice, "replay": self.on_replay is not None}
        return {"lines": lines, "commands": commands, "notice": notice}

    def has_signal(self) -> bool:
        """Whether the bot has sent a message with buttons (a signal) in the sandbox chat."""
        return any(m.keyboard for m in self.server.messages_in(SANDBOX_USER))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `changed` whenever the bot sent, edited or deleted a message."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        seen = self._version()
        try:
            await response.write(b"event: changed\ndata: {}\n\n")  # what changed before the page subscribed
            while True:
                changed = await self.server.wait_or_none(partial(self._changed, seen), KEEPALIVE_SECONDS)
                now = changed is not None
                if now:
                    seen = self._version()
                    await response.write(b"event: changed\ndata: {}\n\n")
                else:
                    await response.write(b": keep-alive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            return response

    def _changed(self, seen: tuple[object, ...]) -> bool | None:
        return self._version() != seen or None

    def _version(self) -> tuple[object, ...]:
        """What the page shows: messages sent, edited and kept, the command menu, and the sandbox's notice (seen
        at the next keep-alive at the latest, as it does not wake the server's waiters)."""
        messages = self.server.messages_in(SANDBOX_USER)
        return len(self.server.sent), len(self.server.edits), len(messages), len(self.server.commands), self.notice

    async def _replay(self, request: web.Request) -> web.Response:
        self._check(request)
        if self.on_replay is None:
            raise web.HTTPConflict(text="nothing to replay")
        replay, self.on_replay, self.notice = self.on_replay, None, "Restarting on recent history at speed…"
        replay()
        return web.json_response({"ok": True})

    async def _photo(self, request: web.Request) -> web.Response:
        try:
            message_id = int(request.match_info["message_id"])
        except ValueError:
            raise web.HTTPNotFound() from None
        image = self.server.image(SANDBOX_USER, message_id)
        if image is None:
            raise web.HTTPNotFound()
        kind = "image/png" if image.startswith(b"\x89PNG") else "image/jpeg"
        return web.Response(body=image, content_type=kind, headers={"Cache-Control": "private, max-age=3600"})

    async def _dashboard_page(self, request: web.Request) -> web.StreamResponse:
        if self.site is None:
            raise web.HTTPServiceUnavailable(text="the bot is starting; reload in a moment")
        return await self.site.page(request)

    async def _dashboard_stop(self, request: web.Request) -> web.StreamResponse:
        if self.site is None:
            raise web.HTTPServiceUnavailable(text="the bot is starting; reload in a moment")
        return await self.site.stop(request)

    # ---------------------------------------------------------------------------------------------- actions

    def _check(self, request: web.Request) -> None:
        if not secrets.compare_digest(request.headers.get("X-CSRF-Token", ""), self.csrf):
            raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page")

    async def _send(self, request: web.Request) -> web.Response:
        self._check(request)
        body = await _json(request)
        text = str(body.get("text") or "").strip()
        if not text or len(text) > MAX_TEXT:
            raise web.HTTPBadRequest(text=f"a message is 1 to {MAX_TEXT} characters")
        last = max((m.message_id for m in self.server.messages_in(SANDBOX_USER)), default=0)
        self._lines.append(UserLine(text, last))
        self.server.user_message(SANDBOX_USER, text, first_name="Sandbox trader")
        return web.json_response({"ok": True})

    async def _click(self, request: web.Request) -> web.Response:
        self._check(request)
        body = await _json(request)
        message_id, data = body.get("message_id"), body.get("data")
        if not isinstance(message_id, int) or not isinstance(data, str) or not data:
            raise web.HTTPBadRequest(text="a press names a message_id and its button's data")
        try:
            query = self.server.click(SANDBOX_USER, message_id, data)
        except (KeyError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"no such button: {exc}") from None
        answer = await self.server.wait_or_none(lambda: self.server.callback_answers.get(query), 10.0)
        return web.json_response({"ok": True, "answer": None if answer is None else answer.text})


_NO_STORE: Final = {"Cache-Control": "no-store"}


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _bot_line(m: SentMessage) -> dict[str, Any]:
    """One bot message for the page: its HTML as the bot sent it (Telegram's tag set, already validated by the
    server's parser), or a photo's caption, and its inline buttons."""
    return {
        "from": "bot",
        "id": f"b{m.message_id}",
        "message_id": m.message_id,
        "html": m.source if m.source is not None else _escape(m.body),
        "photo": bool(m.photo),
        "image": f"/api/photo/{m.message_id}" if m.photo else None,
        "edited": m.edits > 0,
        "order": m.message_id,
        "buttons": [[{"text": text, "data": data} for text, data in row] for row in m.keyboard],
    }


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
