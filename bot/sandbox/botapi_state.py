"""The embedded Bot API server's records, constants and state (see `bot.sandbox.botapi`)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

from aiohttp import web

from bot.sandbox.entities import EntityParseError, _finish_entities, _trim, parse_html

T = TypeVar("T")

DEFAULT_TOKEN: Final = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"
NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
QUERY_INVALID: Final = "Bad Request: query is too old and response timeout expired or query ID is invalid"
EDIT_NOT_FOUND: Final = "Bad Request: message to edit not found"
CONFLICT: Final = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"

_STATUS_TEXT: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
# Telegram leaves these out unless allowed_updates names them.
_OPT_IN_UPDATES: Final = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_DROPPED: Final = web.RequestKey("fake_telegram_dropped", bool)
_SEND_METHODS: Final = ("sendmessage", "sendphoto", "editmessagetext", "editmessagereplymarkup", "editmessagecaption")

# Form fields arrive as strings; these are decoded the way the Bot API reads them.
# fmt: off
_JSON_PARAMS: Final = frozenset({
    "reply_markup", "allowed_updates", "commands", "scope", "entities", "caption_entities", "link_preview_options",
    "reply_parameters", "media",
})
_INT_PARAMS: Final = frozenset({
    "chat_id", "message_id", "offset", "limit", "timeout", "cache_time", "user_id", "message_thread_id",
    "reply_to_message_id",
})
_BOOL_PARAMS: Final = frozenset({
    "show_alert", "disable_notification", "protect_content", "drop_pending_updates", "disable_web_page_preview",
    "allow_sending_without_reply", "show_caption_above_media", "has_spoiler", "allow_paid_broadcast",
})
# fmt: on


# --------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SentMessage:
    """A bot message as Telegram stores it: plain text plus entities, and the markup as sent."""

    chat_id: int
    message_id: int
    date: int  # unix seconds, as in the Message JSON
    at: float  # time.monotonic() of the send, or of the latest edit
    text: str | None = None  # plain text after parse_mode; None for photos
    caption: str | None = None
    entities: tuple[dict[str, Any], ...] = ()  # of the text, or of the caption
    reply_markup: dict[str, Any] | None = None
    source: str | None = None  # text/caption exactly as the bot sent it, markup included
    parse_mode: str | None = None
    photo: tuple[dict[str, Any], ...] = ()
    photo_size: int | None = None  # bytes uploaded
    edits: int = 0
    edit_date: int | None = None
    deleted: bool = False

    @property
    def body(self) -> str:
        """Return the text, or the caption of a photo ("" when neither)."""
        return self.text if self.text is not None else (self.caption or "")

    @property
    def keyboard(self) -> list[list[tuple[str, str | None]]]:
        """Return the keyboard rows as (label, callback_data) pairs."""
        markup = self.reply_markup or {}
        rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
        return [
            [(b["text"], b.get("callback_data")) if isinstance(b, dict) else (str(b), None) for b in row]
            for row in rows
        ]

    @property
    def buttons(self) -> list[tuple[str, str | None]]:
        """Return every button as (label, callback_data), row by row."""
        return [button for row in self.keyboard for button in row]

    def button_data(self, label: str) -> str:
        """Return the callback_data of the button labelled `label`."""
        for text, data in self.buttons:
            if text == label and data is not None:
                return data
        raise KeyError(f"no callback button {label!r} on message {self.message_id}; buttons: {self.buttons}")


@dataclass(frozen=True)
class Call:
    """One HTTP request the bot made; `status` is None while pending or if the client hung up, 0 if dropped."""

    method: str
    params: dict[str, Any]
    at: float
    files: dict[str, int] = field(default_factory=dict)
    status: int | None = None
    finished_at: float | None = None


@dataclass(frozen=True)
class CallbackAnswer:
    """How the bot answered one callback query."""

    query_id: str
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int | None
    at: float


@dataclass
class _Fault:
    status: int
    description: str
    retry_after: int | None
    drop: bool
    applied: bool
    remaining: float


@dataclass
class _Query:
    chat_id: int
    message_id: int
    created: float
    answered: bool = False


GROUP_WINDOW_SECONDS = 60.0


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


class _State:
    """Every piece of the server's state, and the helpers each part of it uses; guarded by one lock."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        port: int = 0,
        bot_name: str = "TradeBot Test",
        bot_username: str = "tradebot_test_bot",
        strict_chats: bool = False,
        callback_ttl: float | None = None,
        group_messages_per_minute: int | None = None,
        keep_photos: bool = True,
    ) -> None:
        """Configure the server; nothing listens until `start()` / `async with` / `with`.

        `group_messages_per_minute`: enforce Telegram's limit on sends to one group (20) with 429s.
        `keep_photos`: keep each uploaded photo for `image` (the sandbox's chat page shows them); off, only its size
        is kept (a benchmark of a bot's memory in the same process).
        """
        self.token = token
        self._keep_photos = keep_photos
        self._group_limit = group_messages_per_minute
        self._port = port
        self._strict_chats = strict_chats
        self._callback_ttl = callback_ttl
        bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 777000
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._users: dict[int, dict[str, Any]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._blocked: set[int] = set()
        self._last_message_id: dict[int, int] = {}
        self._user_messages: set[tuple[int, int]] = set()
        self.deleted_user_messages: list[tuple[int, int]] = []  # (chat, message id) the bot deleted
        self._messages: dict[tuple[int, int], SentMessage] = {}
        self._sent: list[SentMessage] = []
        self._edits: list[SentMessage] = []
        self._files: dict[str, int] = {}
        self._images: dict[tuple[int, int], bytes] = {}  # uploaded photos by (chat, message id)
        self._updates: deque[dict[str, Any]] = deque()
        self._next_update_id = 1
        self._allowed_updates: frozenset[str] = frozenset()
        self._poll_generation = 0
        self._held_polls = 0
        self._queries: dict[str, _Query] = {}
        self._next_query = 0
        self._answers: dict[str, CallbackAnswer] = {}
        self._commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self._calls: list[Call] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._outage: _Fault | None = None
        self._flood: tuple[float, frozenset[str]] | None = None
        self._delays: dict[str, list[float]] = {}
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def _wait(self, predicate: Callable[[], T | None], timeout: float) -> T | None:
        """Return the first truthy `predicate()` (evaluated under the lock), or None after `timeout`."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        entry = (loop, event)
        deadline = loop.time() + timeout
        with self._lock:
            self._async_waiters.add(entry)
        try:
            while True:
                event.clear()
                with self._lock:
                    value = predicate()
                if value:
                    return value
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        finally:
            with self._lock:
                self._async_waiters.discard(entry)

    def _notify(self) -> None:
        """Wake every waiter; call with the lock held."""
        self._cond.notify_all()
        for loop, event in list(self._async_waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                self._async_waiters.discard((loop, event))

    # ----------------------------------------------------------------------------------------- state helpers

    def _ensure_user(
        self, user_id: int, first_name: str, username: str | None, language_code: str = "en"
    ) -> dict[str, Any]:
        user = self._users.get(user_id)
        if user is None:
            user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": language_code}
            if username:
                user["username"] = username
            self._users[user_id] = user
            self._chats.pop(user_id, None)  # a chat auto-created by an earlier send gets the real name
            self._ensure_chat(user_id)
        return user

    def _ensure_chat(self, chat_id: int) -> dict[str, Any]:
        chat = self._chats.get(chat_id)
        if chat is None:
            if chat_id > 0:
                user = self._users.get(chat_id) or {"first_name": f"User{chat_id}"}
                chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
                if "username" in user:
                    chat["username"] = user["username"]
            else:
                kind = "supergroup" if str(chat_id).startswith("-100") else "group"
                chat = {"id": chat_id, "type": kind, "title": f"Group {chat_id}"}
            self._chats[chat_id] = chat
        return chat

    def _target_chat(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        if not isinstance(chat_id, int) or (self._strict_chats and chat_id not in self._chats):
            raise _bad("chat not found")
        self._ensure_chat(chat_id)
        return chat_id

    def _allocate_message_id(self, chat_id: int) -> int:
        self._last_message_id[chat_id] = self._last_message_id.get(chat_id, 0) + 1
        return self._last_message_id[chat_id]

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> int:
        update_id = self._next_update_id
        self._next_update_id += 1
        self._updates.append({"update_id": update_id, kind: payload})
        self._notify()
        return update_id

    def _message_json(self, m: SentMessage) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": m.message_id,
            "from": self.bot_user,
            "chat": self._chats[m.chat_id],
            "date": m.date,
        }
        if m.edit_date is not None:
            out["edit_date"] = m.edit_date
        if m.photo:
            out["photo"] = list(m.photo)
            if m.caption is not None:
                out["caption"] = m.caption
                if m.entities:
                    out["caption_entities"] = list(m.entities)
        else:
            out["text"] = m.text
            if m.entities:
                out["entities"] = list(m.entities)
        if m.reply_markup and "inline_keyboard" in m.reply_markup:
            out["reply_markup"] = m.reply_markup
        return out

    @staticmethod
    def _formatted(
        params: dict[str, Any], field_name: str, entities_name: str, limit: int, too_long: str
    ) -> tuple[str, list[dict[str, Any]], str | None]:
        source = params.get(field_name)
        source = "" if source is None else str(source)
        parse_mode = params.get("parse_mode") or None
        if parse_mode is not None and str(parse_mode).lower() not in ("html", "markdown", "markdownv2"):
            raise _bad(f"unsupported parse_mode {parse_mode!r}")
        if parse_mode is not None and str(parse_mode).lower() == "html":
            try:
                text, entities = parse_html(source)
            except EntityParseError as exc:
                raise _bad(f"can't parse entities: {exc}") from exc
            entities = _finish_entities(entities)
        else:
            # Markdown modes are stored verbatim: this server only parses HTML.
            text = source
            given = params.get(entities_name)
            entities = list(given) if isinstance(given, list) else []
        text, entities = _trim(text, entities)
        if len(text) > limit:
            raise _bad(too_long)
        return text, entities, parse_mode

    @staticmethod
    def _markup(params: dict[str, Any], *, inline_only: bool) -> dict[str, Any] | None:
        markup = params.get("reply_markup")
        if markup is None or markup == "":
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if inline_only:
                raise _bad("inline keyboard expected")
            if not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
                raise _bad("can't parse reply keyboard markup JSON object")
            return markup
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
        if sum(len(row) for row in rows) > 100:
            raise _bad("reply markup is too long")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad('can\'t parse inline keyboard button: Field "text" must be of type String')
                actions = set(button) - {"text", "style", "icon_custom_emoji_id"}
                if not actions:
                    raise _bad("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
                if "callback_data" in button:
                    data = button["callback_data"]
                    if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= 64:
                        raise _bad("BUTTON_DATA_INVALID")
        return markup

    def _editable(self, params: dict[str, Any]) -> SentMessage:
        if params.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")
        chat_id = self._target_chat(params)
        message_id = params.get("message_id")
        if not isinstance(message_id, int):
            raise _bad("message identifier is not specified")
        key = (chat_id, message_id)
        if key in self._user_messages:
            raise _bad("message can't be edited")
        current = self._messages.get(key)
        if current is None or current.deleted:
            raise _bad("message to edit not found")
        return current

    def _store_edit(self, updated: SentMessage) -> dict[str, Any]:
        updated = replace(updated, edits=updated.edits + 1, edit_date=int(time.time()), at=time.monotonic())
        self._messages[(updated.chat_id, updated.message_id)] = updated
        self._edits.append(updated)
        return self._message_json(updated)

    def _check_can_send(self, chat_id: int) -> None:
        if chat_id in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        limit = self._group_limit
        if limit is not None and chat_id < 0:  # "no more than 20 messages per minute to the same group"
            now = time.monotonic()
            recent = [m.at for m in self._sent if m.chat_id == chat_id and now - m.at < GROUP_WINDOW_SECONDS]
            if len(recent) >= limit:
                wait = max(1, math.ceil(GROUP_WINDOW_SECONDS - (now - recent[0])))
                raise _ApiError(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
