"""An in-process fake of the Telegram Bot API, spoken over real HTTP, for end-to-end tests of python-telegram-bot.

The bot under test talks to `FakeTelegram.base_url` (`http://127.0.0.1:PORT/bot`) exactly as it would talk to
`https://api.telegram.org/bot`: PTB posts `{base_url}{token}/{method}` with form-encoded parameters (objects such
as `reply_markup` JSON-encoded as strings) or multipart/form-data when a file is uploaded, and reads back
`{"ok": true, "result": ...}` or `{"ok": false, "error_code": ..., "description": ..., "parameters": ...}`.

Behaviour copied from the real server because bots trip over it:
- HTML is parsed with tdlib's rules (same error texts); the stored text is the plain text plus entities, trimmed.
- `editMessageText` without `reply_markup` removes the inline keyboard; identical edits are 400 "not modified".
- `getUpdates` long-polls, confirms by `offset`, remembers `allowed_updates`, and answers an older concurrent
  poll with 409 Conflict.
- A request that fails (injected fault) has no side effect, unless the fault says the response was lost.

The server runs on the caller's event loop (`async with FakeTelegram(...)`) or on its own thread (`with ...`);
all state is guarded by one lock, so the test side may drive it from either, and the bot may be in-process or a
subprocess (`env={**os.environ, **tg.env()}`). Typical use:

    async with FakeTelegram() as tg:
        app = ApplicationBuilder().token(tg.token).base_url(tg.base_url).build()
        ...start polling...
        tg.user_message(42, "/start")
        signal = await tg.wait_for_message(lambda m: "BUY" in m.text, chat_id=42)
        query_id = tg.click(42, signal, button="Approve")
        assert (await tg.wait_for_answer(query_id)).text == "Approved"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

from aiohttp import web
from telegram.request import HTTPXRequest

from tests.fakes.local_http import listen

__all__ = [
    "Call",
    "CallbackAnswer",
    "EntityParseError",
    "FakeTelegram",
    "SentMessage",
    "fast_request",
    "parse_html",
]

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


_SSL_CONTEXT: ssl.SSLContext | None = None


def fast_request(**kwargs: Any) -> HTTPXRequest:
    """Return a PTB HTTPXRequest that reuses one SSL context (a default one loads the CA bundle: ~0.1 s each)."""
    global _SSL_CONTEXT  # noqa: PLW0603
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = ssl.create_default_context()
    httpx_kwargs = {"verify": _SSL_CONTEXT, **kwargs.pop("httpx_kwargs", {})}
    return HTTPXRequest(httpx_kwargs=httpx_kwargs, **kwargs)


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


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------------------------------- HTML


class EntityParseError(ValueError):
    """Raised for HTML Telegram would reject; the message is the text after "can't parse entities: "."""


# fmt: off
_HTML_TAGS: Final = frozenset({
    "a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji", "span", "pre", "code",
    "blockquote",
})
# fmt: on
_SIMPLE_ENTITY: Final = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
# tdlib orders entities sharing a range by this priority (lowest first).
_PRIORITY: Final = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 11,
    "code": 20,
    "text_link": 49,
    "text_mention": 49,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}
_SPACE: Final = frozenset(b" \t\r\n\0\x0b\x0c")
_TRIM: Final = " \t\r\n\x0b\x0c"


def _is_alnum(c: int) -> bool:
    return 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122


def _decode_html_entity(data: bytes, pos: int) -> tuple[int, int] | None:
    """Decode the character reference at `pos` (tdlib rules: 4 names, numeric forms, ';' optional)."""
    end = pos + 1
    code = 0
    if data[end] == 0x23:  # '#'
        end += 1
        if data[end] == 0x78:  # 'x'
            end += 1
            while chr(data[end]) in "0123456789abcdefABCDEF" and data[end] != 0:
                code = code * 16 + int(chr(data[end]), 16)
                end += 1
        else:
            while 48 <= data[end] <= 57:
                code = code * 10 + data[end] - 48
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return None
    else:
        while 65 <= data[end] <= 90 or 97 <= data[end] <= 122:
            end += 1
        code = {b"lt": 0x3C, b"gt": 0x3E, b"amp": 0x26, b"quot": 0x22}.get(bytes(data[pos + 1 : end]), 0)
        if code == 0:
            return None
    if data[end] == 0x3B:  # ';'
        end += 1
    return code, end


@dataclass
class _OpenTag:
    tag: str
    argument: str
    offset: int
    out_pos: int


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram-flavoured HTML into (plain text, entities) the way tdlib does; raise EntityParseError."""
    data = source.encode("utf-8") + b"\0"
    size = len(data) - 1
    out = bytearray()
    entities: list[dict[str, Any]] = []
    nested: list[_OpenTag] = []
    utf16 = 0
    i = 0
    while i < size:
        c = data[i]
        if c == 0x26:
            decoded = _decode_html_entity(data, i)
            if decoded is not None:
                code, i = decoded
                if 0xD800 <= code <= 0xDFFF:
                    raise EntityParseError(
                        "Text contains invalid Unicode characters after decoding HTML entities, check for unmatched "
                        "surrogate code units"
                    )
                utf16 += 2 if code > 0xFFFF else 1
                out += chr(code).encode("utf-8", "surrogatepass")
                continue
        if c != 0x3C:
            if c & 0xC0 != 0x80:
                utf16 += 2 if c >= 0xF0 else 1
            out.append(c)
            i += 1
            continue
        begin = i
        i += 1
        if data[i] != 0x2F:  # opening tag
            while data[i] not in _SPACE and data[i] != 0x3E:
                i += 1
            if data[i] == 0:
                raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
            tag = data[begin + 1 : i].decode("utf-8", "replace").lower()
            if tag not in _HTML_TAGS:
                raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            while data[i] != 0x3E:
                while data[i] != 0 and data[i] in _SPACE:
                    i += 1
                if data[i] == 0x3E:
                    break
                attr_begin = i
                while data[i] not in _SPACE and data[i] not in (0x3D, 0x3E):
                    i += 1
                attr = data[attr_begin:i].decode("utf-8", "replace")
                if not attr:
                    raise EntityParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while data[i] != 0 and data[i] in _SPACE:
                    i += 1
                if data[i] == 0:
                    raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if data[i] != 0x3D:  # a valueless attribute is ignored, except blockquote's "expandable"
                    if tag == "blockquote" and attr == "expandable":
                        argument = "expandable"
                    continue
                i += 1
                while data[i] != 0 and data[i] in _SPACE:
                    i += 1
                if data[i] == 0:
                    raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if data[i] not in (0x22, 0x27):
                    token_begin = i
                    while _is_alnum(data[i]) or data[i] in (0x2E, 0x2D):
                        i += 1
                    value = data[token_begin:i].decode("ascii").lower()
                    if data[i] not in _SPACE and data[i] != 0x3E:
                        raise EntityParseError(f"Unexpected end of name token at byte offset {token_begin}")
                else:
                    quote = data[i]
                    i += 1
                    buf = bytearray()
                    while data[i] != quote and data[i] != 0:
                        if data[i] == 0x26 and (decoded := _decode_html_entity(data, i)) is not None:
                            buf += chr(decoded[0]).encode("utf-8", "surrogatepass")
                            i = decoded[1]
                            continue
                        buf.append(data[i])
                        i += 1
                    if data[i] == quote:
                        i += 1
                    value = buf.decode("utf-8", "replace")
                if data[i] == 0:
                    raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
                if tag == "a" and attr == "href":
                    argument = value
                elif tag == "code" and attr == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif tag == "span" and attr == "class" and value.startswith("tg-"):
                    argument = value[len("tg-") :]
                elif tag == "tg-emoji" and attr == "emoji-id":
                    argument = value
                elif tag == "blockquote" and attr == "expandable":
                    argument = "expandable"
            if tag == "span" and argument != "spoiler":
                raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            nested.append(_OpenTag(tag, argument, utf16, len(out)))
        else:  # closing tag
            if not nested:
                raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
            while data[i] not in _SPACE and data[i] != 0x3E:
                i += 1
            end_tag = data[begin + 2 : i].decode("utf-8", "replace").lower()
            while data[i] != 0 and data[i] in _SPACE:
                i += 1
            if data[i] != 0x3E:
                raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
            top = nested[-1]
            if end_tag and end_tag != top.tag:
                raise EntityParseError(
                    f'Unmatched end tag at byte offset {begin}, expected "</{top.tag}>", found "</{end_tag}>"'
                )
            if utf16 > top.offset:
                _close_entity(top, utf16, out, entities)
            nested.pop()
        i += 1
    if nested:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{nested[-1].tag}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"], _PRIORITY.get(e["type"], 50)))
    return out.decode("utf-8", "surrogatepass"), entities


def _close_entity(top: _OpenTag, utf16: int, out: bytearray, entities: list[dict[str, Any]]) -> None:
    offset, length = top.offset, utf16 - top.offset
    span = {"offset": offset, "length": length}
    last = entities[-1] if entities else None
    same_range = last is not None and last["offset"] == offset and last["length"] == length
    if top.tag in _SIMPLE_ENTITY:
        entities.append({"type": _SIMPLE_ENTITY[top.tag], **span})
    elif top.tag == "tg-emoji":
        if not top.argument.isdigit() or int(top.argument) == 0:
            raise EntityParseError("Invalid custom emoji identifier specified")
        entities.append({"type": "custom_emoji", **span, "custom_emoji_id": top.argument})
    elif top.tag == "a":
        url = _checked_link(top.argument or out[top.out_pos :].decode("utf-8", "replace"))
        if url is not None:
            entities.append({"type": "text_link", **span, "url": url})
    elif top.tag == "pre":
        if same_range and last is not None and last["type"] == "code" and last.get("language"):
            entities[-1] = {"type": "pre", **span, "language": last["language"]}
        else:
            entities.append({"type": "pre", **span})
    elif top.tag == "code":
        if same_range and last is not None and last["type"] == "pre" and top.argument:
            last["language"] = top.argument
        else:
            entity = {"type": "code", **span}
            if top.argument:
                entity["language"] = top.argument  # only kept if a <pre> closes on the same range
            entities.append(entity)
    elif top.tag == "blockquote":
        kind = "expandable_blockquote" if top.argument == "expandable" else "blockquote"
        entities.append({"type": kind, **span})


def _checked_link(url: str) -> str | None:
    """Normalise a link like tdlib ("telegram.org" -> "http://telegram.org/"); None if it isn't one."""
    if not url or any(ch.isspace() for ch in url):
        return None
    if url.startswith(("tg:", "mailto:")):
        return url
    if "://" not in url:
        url = "http://" + url
    scheme, rest = url.split("://", 1)
    host = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if scheme.lower() not in ("http", "https", "ftp", "tonsite") or "." not in host.strip("."):
        return None
    if len(host) == len(rest) or rest[len(host)] != "/":
        rest = host + "/" + rest[len(host) :]
    return f"{scheme.lower()}://{rest}"


def _finish_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    return entities


def _trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Strip surrounding whitespace as Telegram does, clipping the entities to what is left."""
    stripped = text.strip(_TRIM)
    if stripped == text:
        return text, entities
    lead = _utf16_len(text[: len(text) - len(text.lstrip(_TRIM))])
    end = lead + _utf16_len(stripped)
    kept = []
    for entity in entities:
        start, stop = max(entity["offset"], lead), min(entity["offset"] + entity["length"], end)
        if stop > start:
            kept.append({**entity, "offset": start - lead, "length": stop - start})
    return stripped, kept


_COMMAND: Final = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/@])")


def _command_entities(text: str) -> list[dict[str, Any]]:
    return [
        {"type": "bot_command", "offset": _utf16_len(text[: m.start()]), "length": _utf16_len(m.group())}
        for m in _COMMAND.finditer(text)
    ]


# --------------------------------------------------------------------------------------------------- images


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Return (width, height) of a PNG/JPEG/GIF/BMP/WebP image, or None if Telegram couldn't process it."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data.startswith(b"BM") and len(data) >= 26:
        return int.from_bytes(data[18:22], "little", signed=True), abs(
            int.from_bytes(data[22:26], "little", signed=True)
        )
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return 512, 512
    if data.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 9 < len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return int.from_bytes(data[pos + 7 : pos + 9], "big"), int.from_bytes(data[pos + 5 : pos + 7], "big")
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _scaled(width: int, height: int, bound: int) -> tuple[int, int]:
    factor = min(1.0, bound / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


# --------------------------------------------------------------------------------------------------- server


class FakeTelegram:
    """A local Bot API server: drive it as users, inject faults, and observe what the bot did."""

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
    ) -> None:
        """Configure the fake; nothing listens until `start()` / `async with` / `with`.

        `group_messages_per_minute`: enforce Telegram's limit on sends to one group (20) with 429s.
        """
        self.token = token
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
        self._handlers: dict[str, Callable[[dict[str, Any], dict[str, bytes]], Any]] = {
            "getme": self._get_me,
            "logout": lambda p, f: True,
            "close": lambda p, f: True,
            "getwebhookinfo": self._get_webhook_info,
            "deletewebhook": self._delete_webhook,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "sendchataction": self._send_chat_action,
            "editmessagetext": self._edit_message_text,
            "editmessagecaption": self._edit_message_caption,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "answercallbackquery": self._answer_callback_query,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
        }

    # ----------------------------------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        """Return the bound TCP port (after start)."""
        if not self._port:
            raise RuntimeError("FakeTelegram is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """Return the value for PTB's `base_url` / TELEGRAM_API_BASE_URL."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """Return the value for PTB's `base_file_url`."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    def env(self) -> dict[str, str]:
        """Return environment variables pointing a `tradebot run` subprocess at this server."""
        return {"TELEGRAM_BOT_TOKEN": self.token, "TELEGRAM_API_BASE_URL": self.base_url}

    async def start(self) -> FakeTelegram:
        """Start listening on 127.0.0.1 on the running event loop."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # handler_cancellation: a poll whose client hung up (PTB stopping) must not linger or deliver.
        self._runner, self._port = await listen(app, self._port, handler_cancellation=True)
        self._loop = asyncio.get_running_loop()
        with self._lock:
            self._closing = False
        return self

    async def stop(self) -> None:
        """Release held long polls and stop listening (well under a second)."""
        with self._lock:
            self._closing = True
            self._notify()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self) -> FakeTelegram:
        """Start the server on a private event loop in a daemon thread (for synchronous tests)."""
        started = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="FakeTelegram", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        """Stop a server started with `start_in_thread`."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> FakeTelegram:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    # ----------------------------------------------------------------------------------------- driving

    def add_user(
        self, user_id: int, first_name: str = "Tester", *, username: str | None = None, language_code: str = "en"
    ) -> dict[str, Any]:
        """Register (or return) a user and their private chat; returns the User JSON."""
        with self._lock:
            return self._ensure_user(user_id, first_name, username, language_code)

    def block(self, user_id: int, blocked: bool = True) -> None:
        """Make sends to this user fail with 403 "bot was blocked by the user" (or undo it)."""
        with self._lock:
            (self._blocked.add if blocked else self._blocked.discard)(user_id)

    def user_message(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        *,
        first_name: str = "Tester",
        username: str | None = None,
    ) -> int:
        """Enqueue a text message from a user (commands get bot_command entities); return its update_id."""
        with self._lock:
            user = self._ensure_user(user_id, first_name, username)
            chat_id = user_id if chat_id is None else chat_id
            chat = self._ensure_chat(chat_id)
            message_id = self._allocate_message_id(chat_id)
            self._user_messages.add((chat_id, message_id))
            message: dict[str, Any] = {
                "message_id": message_id,
                "from": user,
                "chat": chat,
                "date": int(time.time()),
                "text": text,
            }
            if entities := _command_entities(text):
                message["entities"] = entities
            return self._enqueue("message", message)

    def click(
        self,
        user_id: int,
        message: SentMessage | int,
        data: str | None = None,
        *,
        button: str | None = None,
        chat_id: int | None = None,
        allow_stale: bool = False,
    ) -> str:
        """Press an inline button (by callback `data` or `button` label) on a bot message; return the query id."""
        with self._lock:
            if isinstance(message, SentMessage):
                key = (message.chat_id, message.message_id)
            else:
                key = (user_id if chat_id is None else chat_id, message)
            current = self._messages.get(key)
            if current is None or current.deleted:
                raise ValueError(f"no bot message {key} to click on")
            if button is not None:
                data = current.button_data(button)
            if data is None:
                raise ValueError("click needs callback data or a button label")
            if not allow_stale and data not in {d for _, d in current.buttons}:
                raise ValueError(f"message {key} has no button with data {data!r}; buttons: {current.buttons}")
            user = self._ensure_user(user_id, "Tester", None)
            self._next_query += 1
            query_id = str(4_800_000_000_000_000_000 + self._next_query * 7919)
            self._queries[query_id] = _Query(key[0], key[1], time.monotonic())
            self._enqueue(
                "callback_query",
                {
                    "id": query_id,
                    "from": user,
                    "message": self._message_json(current),
                    "chat_instance": str(-(abs(key[0]) * 2654435761 % 10**19)),
                    "data": data,
                },
            )
            return query_id

    def enqueue_update(self, kind: str, payload: dict[str, Any]) -> int:
        """Enqueue a raw update of any type (e.g. "edited_message"); return its update_id."""
        with self._lock:
            return self._enqueue(kind, payload)

    # ----------------------------------------------------------------------------------------- faults

    def fail_next(
        self,
        method: str,
        times: int = 1,
        *,
        status: int = 429,
        retry_after: int | None = None,
        description: str | None = None,
        drop: bool = False,
        applied: bool = False,
    ) -> None:
        """Fail the next `times` calls of `method`: HTTP `status`, or a dropped connection if `drop`.

        `applied=True` performs the call first and then loses the response (the bot can't know it worked).
        """
        fault = self._make_fault(status, retry_after, description, drop, applied, times)
        with self._lock:
            self._faults.setdefault(method.lower(), deque()).append(fault)

    def fail_all(self, status: int = 502, *, description: str | None = None, drop: bool = False) -> None:
        """Fail every call (getUpdates included) until `recover()`."""
        with self._lock:
            self._outage = self._make_fault(status, None, description, drop, False, math.inf)

    def recover(self) -> None:
        """End `fail_all`, pending `fail_next` faults, floods and slowdowns."""
        with self._lock:
            self._outage = None
            self._faults.clear()
            self._flood = None
            self._delays.clear()

    @contextlib.contextmanager
    def outage(self, status: int = 502, *, drop: bool = False) -> Iterator[None]:
        """Make the API unavailable inside the block."""
        self.fail_all(status, drop=drop)
        try:
            yield
        finally:
            with self._lock:
                self._outage = None

    def flood(self, seconds: float, methods: tuple[str, ...] | None = None) -> None:
        """Answer send/edit calls with 429 and a counting-down retry_after until `seconds` have passed."""
        names = frozenset(m.lower() for m in methods) if methods else frozenset(_SEND_METHODS)
        with self._lock:
            self._flood = (time.monotonic() + seconds, names)

    def slow(self, method: str, seconds: float, times: int | None = None) -> None:
        """Delay the response to `method` (before acting, so a client timeout leaves no side effect)."""
        with self._lock:
            if seconds <= 0:
                self._delays.pop(method.lower(), None)
            else:
                self._delays[method.lower()] = [seconds, math.inf if times is None else times]

    @staticmethod
    def _make_fault(
        status: int, retry_after: int | None, description: str | None, drop: bool, applied: bool, times: float
    ) -> _Fault:
        if status == 429 and retry_after is None:
            retry_after = 3
        if description is None:
            description = _STATUS_TEXT.get(status, "Unknown Error")
            if status == 429:
                description = f"Too Many Requests: retry after {retry_after}"
        return _Fault(status, description, retry_after, drop, applied, times)

    # ----------------------------------------------------------------------------------------- observing

    @property
    def sent(self) -> list[SentMessage]:
        """Return every message the bot sent, in order, as it was when sent."""
        with self._lock:
            return list(self._sent)

    @property
    def edits(self) -> list[SentMessage]:
        """Return the state after each successful edit, in order."""
        with self._lock:
            return list(self._edits)

    def messages_in(self, chat_id: int) -> list[SentMessage]:
        """Return the current state of the bot's undeleted messages in a chat, oldest first."""
        with self._lock:
            return sorted(
                (m for (c, _), m in self._messages.items() if c == chat_id and not m.deleted),
                key=lambda m: m.message_id,
            )

    def message(self, chat_id: int, message_id: int) -> SentMessage:
        """Return the current state of one bot message (after edits)."""
        with self._lock:
            return self._messages[(chat_id, message_id)]

    @property
    def callback_answers(self) -> dict[str, CallbackAnswer]:
        """Return the answers the bot gave, by callback query id."""
        with self._lock:
            return dict(self._answers)

    @property
    def commands(self) -> list[tuple[str, str]]:
        """Return the default-scope command list set by the bot as (command, description)."""
        return self.commands_for()

    def commands_for(self, scope: dict[str, Any] | None = None, language_code: str = "") -> list[tuple[str, str]]:
        """Return the command list for a scope and language."""
        key = (json.dumps(scope or {"type": "default"}, sort_keys=True), language_code)
        with self._lock:
            return [(c["command"], c["description"]) for c in self._commands.get(key, [])]

    @property
    def calls(self) -> list[Call]:
        """Return every API request received, in arrival order."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str, *, status: int | None = None) -> list[Call]:
        """Return the calls of one method, optionally only those answered with `status`."""
        with self._lock:
            return [
                c for c in self._calls if c.method.lower() == method.lower() and (status is None or c.status == status)
            ]

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Return updates not yet confirmed by the bot."""
        with self._lock:
            return list(self._updates)

    @property
    def polling(self) -> bool:
        """Return whether a getUpdates long poll is currently held."""
        with self._lock:
            return self._held_polls > 0

    # ----------------------------------------------------------------------------------------- waiting

    async def wait_until(
        self, predicate: Callable[[], T | None], timeout: float = 5.0, *, what: str = "condition"
    ) -> T:
        """Wait until `predicate()` is truthy (re-checked on every server state change) and return its value."""
        value = await self._wait(predicate, timeout)
        if not value:
            raise TimeoutError(self._timeout_report(what, timeout))
        return value

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

    def wait_until_sync(self, predicate: Callable[[], T | None], timeout: float = 5.0, *, what: str = "condition") -> T:
        """Block until `predicate()` is truthy; only for a server running in its own thread."""
        if self._thread is None or threading.current_thread() is self._thread:
            raise RuntimeError("wait_until_sync needs the server running in its own thread (start_in_thread)")
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(self._timeout_report(what, timeout))
                self._cond.wait(remaining)
            return value

    async def wait_for_message(
        self,
        predicate: Callable[[SentMessage], bool] | None = None,
        *,
        chat_id: int | None = None,
        since: int = 0,
        timeout: float = 5.0,
    ) -> SentMessage:
        """Wait for the first sent message at index >= `since` (see `len(tg.sent)`) that matches."""

        def find() -> SentMessage | None:
            for m in self._sent[since:]:
                if (chat_id is None or m.chat_id == chat_id) and (predicate is None or predicate(m)):
                    return m
            return None

        return await self.wait_until(find, timeout, what="a matching sent message")

    async def wait_for_answer(self, query_id: str, timeout: float = 5.0) -> CallbackAnswer:
        """Wait until the bot answers callback query `query_id`."""
        return await self.wait_until(lambda: self._answers.get(query_id), timeout, what=f"answer to {query_id}")

    async def wait_for_edit(
        self,
        chat_id: int,
        message_id: int,
        predicate: Callable[[SentMessage], bool] | None = None,
        *,
        min_edits: int = 1,
        timeout: float = 5.0,
    ) -> SentMessage:
        """Wait until a message has been edited at least `min_edits` times and its state matches."""

        def check() -> SentMessage | None:
            m = self._messages.get((chat_id, message_id))
            if m is not None and m.edits >= min_edits and (predicate is None or predicate(m)):
                return m
            return None

        return await self.wait_until(check, timeout, what=f"edit of message {chat_id}/{message_id}")

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        *,
        status: int | None = None,
        since: int = 0,
        timeout: float = 5.0,
    ) -> Call:
        """Wait for a finished call of `method` at index >= `since` of `calls`."""

        def find() -> Call | None:
            for c in self._calls[since:]:
                if (
                    c.method.lower() == method.lower()
                    and c.finished_at is not None
                    and (status is None or c.status == status)
                    and (predicate is None or predicate(c))
                ):
                    return c
            return None

        return await self.wait_until(find, timeout, what=f"a {method} call")

    async def wait_for_polling(self, timeout: float = 5.0) -> None:
        """Wait until the bot holds a long poll (it is up and listening)."""
        await self.wait_until(lambda: self._held_polls > 0, timeout, what="a held getUpdates long poll")

    async def wait_until_delivered(self, timeout: float = 5.0) -> None:
        """Wait until the bot has confirmed (via offset) every update enqueued so far."""
        await self.wait_until(lambda: not self._updates, timeout, what="all updates confirmed")

    def _timeout_report(self, what: str, timeout: float) -> str:
        with self._lock:
            calls = ", ".join(f"{c.method}:{c.status}" for c in self._calls[-12:])
            sent = "; ".join(repr(m.body[:60]) for m in self._sent[-5:])
        return f"timed out after {timeout}s waiting for {what}. Last calls: [{calls}]. Last sent: [{sent}]"

    def _notify(self) -> None:
        """Wake every waiter; call with the lock held."""
        self._cond.notify_all()
        for loop, event in list(self._async_waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                self._async_waiters.discard((loop, event))

    # ----------------------------------------------------------------------------------------- HTTP

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._error_response(404, "Not Found")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params, files = await self._read_params(request)
        except _ApiError as exc:
            params, files = {}, {}
            parse_error: _ApiError | None = exc
        else:
            parse_error = None
        with self._lock:
            index = len(self._calls)
            self._calls.append(Call(method, params, time.monotonic(), files={k: len(v) for k, v in files.items()}))
            self._notify()
        status: int | None = None
        try:
            response = await self._dispatch(request, method, params, files, parse_error)
            if request.get(_DROPPED):
                status = 0
            elif request.transport is not None and not request.transport.is_closing():
                status = response.status  # else the client hung up first: nobody saw this answer
            return response
        finally:
            with self._lock:
                self._calls[index] = replace(self._calls[index], status=status, finished_at=time.monotonic())
                self._notify()

    async def _dispatch(
        self,
        request: web.Request,
        method: str,
        params: dict[str, Any],
        files: dict[str, bytes],
        parse_error: _ApiError | None,
    ) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error_response(401, "Unauthorized")
        name = method.lower()
        handler = self._handlers.get(name)
        if handler is None:
            return self._error_response(404, "Not Found")
        if (delay := self._take_delay(name)) > 0:
            await asyncio.sleep(delay)
        with self._lock:
            fault = self._take_fault(name)
        if fault is not None and not fault.applied:
            return self._fault_response(request, fault)
        if parse_error is not None:
            return self._error_response(parse_error.status, parse_error.description)
        try:
            if name == "getupdates":
                result = await self._get_updates(params, files)
            else:
                with self._lock:
                    result = handler(params, files)
                    self._notify()
        except _ApiError as exc:
            return self._error_response(exc.status, exc.description, exc.parameters)
        if fault is not None:
            return self._fault_response(request, fault)
        return web.Response(
            text=json.dumps({"ok": True, "result": result}, ensure_ascii=False), content_type="application/json"
        )

    @staticmethod
    def _error_response(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    def _fault_response(self, request: web.Request, fault: _Fault) -> web.Response:
        if fault.drop:
            request[_DROPPED] = True
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=502)
        parameters = {"retry_after": fault.retry_after} if fault.retry_after is not None else None
        return self._error_response(fault.status, fault.description, parameters)

    def _take_delay(self, name: str) -> float:
        with self._lock:
            entry = self._delays.get(name)
            if entry is None:
                return 0.0
            entry[1] -= 1
            if entry[1] <= 0:
                del self._delays[name]
            return entry[0]

    def _take_fault(self, name: str) -> _Fault | None:
        if self._outage is not None:
            return self._outage
        if self._flood is not None:
            until, names = self._flood
            left = until - time.monotonic()
            if left <= 0:
                self._flood = None
            elif name in names:
                return self._make_fault(429, max(1, math.ceil(left)), None, False, False, 1)
        queue = self._faults.get(name)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    @staticmethod
    async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, bytes] = {}
        if request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError as exc:
                    raise _bad("can't parse JSON encoded request") from exc
                if isinstance(body, dict):
                    raw.update(body)
            elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        files[key] = value.file.read()
                    else:
                        raw[key] = value
        return {k: _decode_param(k, v) for k, v in raw.items()}, files

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
            # Markdown modes are stored verbatim: this fake only parses HTML.
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

    # ----------------------------------------------------------------------------------------- methods

    def _get_me(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        return self.bot_user

    def _get_webhook_info(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    def _delete_webhook(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_updates(self, params: dict[str, Any], files: dict[str, bytes]) -> list[dict[str, Any]]:
        offset, limit, timeout = params.get("offset"), params.get("limit"), params.get("timeout")
        limit = min(100, max(1, limit)) if isinstance(limit, int) and limit > 0 else 100
        timeout = max(0, timeout) if isinstance(timeout, int) else 0
        allowed = params.get("allowed_updates")
        with self._lock:
            self._poll_generation += 1
            generation = self._poll_generation
            if isinstance(allowed, list):
                self._allowed_updates = frozenset(allowed)
            if isinstance(offset, int) and offset < 0:
                while len(self._updates) > -offset:
                    self._updates.popleft()
            elif isinstance(offset, int):
                while self._updates and self._updates[0]["update_id"] < offset:
                    self._updates.popleft()
            self._notify()

        def ready() -> tuple[str, list[dict[str, Any]]] | None:
            if generation != self._poll_generation:
                return ("conflict", [])
            self._drop_unwanted()
            if self._updates or self._closing:
                return ("ok", list(self._updates)[:limit])
            return None

        with self._lock:
            outcome = ready()
            if outcome is None and timeout > 0:
                self._held_polls += 1
                self._notify()
        if outcome is None and timeout > 0:
            try:
                outcome = await self._wait(ready, timeout)
            finally:
                with self._lock:
                    self._held_polls -= 1
                    self._notify()
        if outcome is not None and outcome[0] == "conflict":
            raise _ApiError(409, CONFLICT)
        return outcome[1] if outcome is not None else []

    def _drop_unwanted(self) -> None:
        allowed = self._allowed_updates
        kept = deque(
            u
            for u in self._updates
            if (kind := next(k for k in u if k != "update_id")) in allowed
            or (not allowed and kind not in _OPT_IN_UPDATES)
        )
        if len(kept) != len(self._updates):
            self._updates = kept

    def _send_message(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        chat_id = self._target_chat(params)
        if params.get("text") in (None, ""):
            raise _bad("message text is empty")
        text, entities, parse_mode = self._formatted(params, "text", "entities", 4096, "message is too long")
        if not text:
            raise _bad("message text is empty")
        markup = self._markup(params, inline_only=False)
        self._check_can_send(chat_id)
        message = SentMessage(
            chat_id=chat_id,
            message_id=self._allocate_message_id(chat_id),
            date=int(time.time()),
            at=time.monotonic(),
            text=text,
            entities=tuple(entities),
            reply_markup=markup,
            source=str(params["text"]),
            parse_mode=parse_mode,
        )
        return self._record_sent(message)

    def _send_photo(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        chat_id = self._target_chat(params)
        photo = params.get("photo")
        if isinstance(photo, str) and photo.startswith("attach://"):
            upload = files.get(photo[len("attach://") :])
        else:
            upload = files.get("photo")
        if upload is None and not photo:
            raise _bad("there is no photo in the request")
        caption, entities, parse_mode = self._formatted(
            params, "caption", "caption_entities", 1024, "message caption is too long"
        )
        markup = self._markup(params, inline_only=False)
        if upload is not None:
            if not upload:
                raise _bad("file must be non-empty")
            dims = _image_size(upload)
            if dims is None:
                raise _bad("IMAGE_PROCESS_FAILED")
            width, height = dims
            if width <= 0 or height <= 0 or width + height > 10000 or max(width, height) > 20 * min(width, height):
                raise _bad("PHOTO_INVALID_DIMENSIONS")
            size = len(upload)
        elif isinstance(photo, str) and photo in self._files:
            width, height, size = 1280, 720, self._files[photo]
        elif isinstance(photo, str) and photo.startswith(("http://", "https://")):
            width, height, size = 1280, 720, 0
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        self._check_can_send(chat_id)
        message_id = self._allocate_message_id(chat_id)
        sizes = []
        for suffix, bound in (("s", 90), ("m", 320), ("x", 800), ("y", 1280)):
            w, h = _scaled(width, height, bound)
            file_id = f"AgACAgIAAxkDAAI{chat_id & 0xFFFF:04x}{message_id:06d}{suffix}"
            sizes.append(
                {
                    "file_id": file_id,
                    "file_unique_id": f"AQAD{message_id:06d}{suffix}",
                    "file_size": max(1, size * w * h // max(1, width * height)),
                    "width": w,
                    "height": h,
                }
            )
            self._files[file_id] = size
            if max(width, height) <= bound:
                break
        message = SentMessage(
            chat_id=chat_id,
            message_id=message_id,
            date=int(time.time()),
            at=time.monotonic(),
            caption=caption if params.get("caption") not in (None, "") else None,
            entities=tuple(entities),
            reply_markup=markup,
            source=params.get("caption"),
            parse_mode=parse_mode,
            photo=tuple(sizes),
            photo_size=size,
        )
        return self._record_sent(message)

    def _record_sent(self, message: SentMessage) -> dict[str, Any]:
        self._messages[(message.chat_id, message.message_id)] = message
        self._sent.append(message)
        return self._message_json(message)

    def _send_chat_action(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        chat_id = self._target_chat(params)
        if not params.get("action"):
            raise _bad("action is empty")
        self._check_can_send(chat_id)
        return True

    def _edit_message_text(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        if params.get("text") in (None, ""):
            raise _bad("message text is empty")
        text, entities, parse_mode = self._formatted(params, "text", "entities", 4096, "MESSAGE_TOO_LONG")
        if not text:
            raise _bad("message text is empty")
        markup = self._markup(params, inline_only=True)
        current = self._editable(params)
        if current.photo:
            raise _bad("there is no text in the message to edit")
        if text == current.text and list(entities) == list(current.entities) and markup == current.reply_markup:
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        updated = replace(
            current,
            text=text,
            entities=tuple(entities),
            reply_markup=markup,
            source=str(params["text"]),
            parse_mode=parse_mode,
        )
        return self._store_edit(updated)

    def _edit_message_caption(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        caption, entities, parse_mode = self._formatted(
            params, "caption", "caption_entities", 1024, "message caption is too long"
        )
        markup = self._markup(params, inline_only=True)
        current = self._editable(params)
        if not current.photo:
            raise _bad("there is no caption in the message to edit")
        new_caption = caption or None
        if (
            new_caption == current.caption
            and list(entities) == list(current.entities)
            and markup == current.reply_markup
        ):
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        updated = replace(
            current,
            caption=new_caption,
            entities=tuple(entities),
            reply_markup=markup,
            source=params.get("caption"),
            parse_mode=parse_mode,
        )
        return self._store_edit(updated)

    def _edit_message_reply_markup(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        markup = self._markup(params, inline_only=True)
        current = self._editable(params)
        if markup == current.reply_markup:
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        return self._store_edit(replace(current, reply_markup=markup))

    def _delete_message(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        chat_id = self._target_chat(params)
        message_id = params.get("message_id")
        if not isinstance(message_id, int):
            raise _bad("message identifier is not specified")
        key = (chat_id, message_id)
        if key in self._user_messages:
            self._user_messages.discard(key)
            self.deleted_user_messages.append(key)
            return True
        current = self._messages.get(key)
        if current is None or current.deleted:
            raise _bad("message to delete not found")
        self._messages[key] = replace(current, deleted=True)
        return True

    def _answer_callback_query(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        query = self._queries.get(query_id)
        expired = (
            query is not None
            and self._callback_ttl is not None
            and time.monotonic() - query.created > self._callback_ttl
        )
        if query is None or query.answered or expired:
            raise _bad(QUERY_INVALID.removeprefix("Bad Request: "))
        text = params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        query.answered = True
        self._answers[query_id] = CallbackAnswer(
            query_id=query_id,
            text=text if text else None,
            show_alert=bool(params.get("show_alert")),
            url=params.get("url"),
            cache_time=params.get("cache_time"),
            at=time.monotonic(),
        )
        return True

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise _bad("can't parse BotCommandScope JSON object")
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    def _set_my_commands(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("too many commands")
        cleaned = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand JSON object")
            name, description = str(command.get("command", "")), str(command.get("description", "")).strip()
            name = name.removeprefix("/").lower()
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise _bad("command description is empty" if not description else "BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        key = self._commands_key(params)
        if cleaned:
            self._commands[key] = cleaned
        else:
            self._commands.pop(key, None)
        return True

    def _get_my_commands(self, params: dict[str, Any], files: dict[str, bytes]) -> list[dict[str, str]]:
        return list(self._commands.get(self._commands_key(params), []))

    def _delete_my_commands(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True


def _decode_param(name: str, value: Any) -> Any:
    """Turn a form-encoded value back into what the Bot API would understand it as."""
    if not isinstance(value, str):
        return value
    if name in _JSON_PARAMS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    if name in _INT_PARAMS:
        try:
            return int(value)
        except ValueError:
            try:
                return int(float(value))
            except ValueError:
                return value
    if name in _BOOL_PARAMS:
        return value.lower() in ("true", "1")
    return value
