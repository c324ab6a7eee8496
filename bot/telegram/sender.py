"""Deliver the persisted outbox to Telegram: paced per chat, retried with backoff, never silently dropped.

- At most one message per `min_interval` seconds per chat (Telegram allows about one per second).
- 429 `retry_after`: the whole sender pauses that long (the limit is the bot's) and the item is retried.
- Network errors, timeouts and 5xx: the item is retried with exponential backoff and jitter (1 s .. 5 min).
- A 400 that can never succeed (bad markup, chat not found) or a 403 (the user blocked the bot) is logged as
  an error and the item is closed; an edit that changes nothing ("message is not modified") counts as sent.
Delivery is at-least-once: a crash between Telegram's answer and the store's update resends that item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.telegram.messages import MAX_MESSAGE_CHARS, plain_text, split_html
from data.outbox import OutboxItem, OutboxKind, OutboxStore
from data.redaction import Redactor
from data.sqlite.store import StoreError

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
STORE_PAUSE = 5.0  # after the store failed to record a delivery
NOT_MODIFIED = "message is not modified"
NO_TEXT = "there is no text in the message to edit"  # the message is a photo: its caption is edited instead
MAX_CAPTION_CHARS = 1024
TOO_LONG = "too long"
CANNOT_PARSE = "can't parse entities"


def markup(buttons: list[list[list[str]]] | None) -> InlineKeyboardMarkup | None:
    """Inline keyboard from rows of (label, callback data); None for no buttons."""
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(text=label, callback_data=data) for label, data in row] for row in buttons]
    )


def _seconds(value: Any) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class OutboxSender:
    """Background task draining the outbox through the Telegram Bot API."""

    def __init__(
        self,
        bot: Bot,
        store: OutboxStore,
        *,
        min_interval: float = 1.0,
        poll_seconds: float = 0.5,
        redactor: Redactor | None = None,
        after_signals: Callable[[list[str]], Awaitable[None]] | None = None,
        wakeup: asyncio.Event | None = None,
    ) -> None:
        self.bot = bot
        self.after_signals = after_signals  # told the signals a message just showed (to end stale buttons)
        self.redactor = redactor or Redactor()
        self.store = store
        self.min_interval = min_interval
        self.poll_seconds = poll_seconds
        self._wake = wakeup if wakeup is not None else asyncio.Event()  # set by whoever queues a message
        self._stop = asyncio.Event()
        self._last_sent: dict[int, float] = {}
        self._paused_until = 0.0
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look at the outbox now (something was just queued)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-sender")

    async def stop(self) -> None:
        """Finish the message being sent, then stop."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                items = await self.store.due_messages(datetime.now(UTC), limit=20)
            except Exception:
                log.exception("reading the outbox failed")
                items = []
            for item in items:
                try:
                    await self._deliver(item)
                except StoreError as exc:  # the store could not record it (disk full, locked): tried again later
                    log.warning("outbox item %s: %s; trying again in %.0f s", item.item_id, exc, STORE_PAUSE)
                    await self._sleep(STORE_PAUSE)
                    break
                except Exception:
                    log.exception("delivering outbox item %s failed; trying again in %.0f s", item.item_id, STORE_PAUSE)
                    await self._sleep(STORE_PAUSE)
                    break
                if self._stop.is_set():
                    break
            if not items:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less when the sender is stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def _pace(self, chat_id: int) -> None:
        wait = max(self._paused_until - time.monotonic(), 0.0)
        wait = max(wait, self._last_sent.get(chat_id, -1e9) + self.min_interval - time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)

    async def _deliver(self, item: OutboxItem) -> None:
        await self._pace(item.chat_id)
        try:
            await self._send(item)
        except RetryAfter as exc:
            delay = _seconds(exc.retry_after)
            self._paused_until = time.monotonic() + delay
            log.warning("Telegram asked to slow down for %.0f s (item %s)", delay, item.item_id)
            await self._retry_later(item, delay, f"429 retry after {delay:.0f} s")
        except BadRequest as exc:
            await self._refused(item, exc)
        except Forbidden as exc:
            log.error(
                "chat %s does not accept messages from the bot: %s (item %s closed)", item.chat_id, exc, item.item_id
            )
            await self.store.mark_sent(item.item_id, datetime.now(UTC))
        except (NetworkError, TelegramError, OSError) as exc:
            delay = min(2.0**item.attempts, MAX_BACKOFF_SECONDS) * random.uniform(0.8, 1.2)
            log.warning("sending outbox item %s failed (%s); retry in %.1f s", item.item_id, exc, delay)
            await self._retry_later(item, delay, f"{type(exc).__name__}: {exc}")
        finally:
            self._last_sent[item.chat_id] = time.monotonic()

    async def _refused(self, item: OutboxItem, exc: BadRequest) -> None:
        """Telegram refused the item as it is: deliver what can be delivered, and never drop it without a word.

        Too long: sent again in parts that fit (an edit is shortened). Bad HTML: sent again as plain text. Anything
        else: closed, and the chat is told in one plain line that a message could not be delivered.
        """
        text = str(item.payload.get("text", ""))
        why = str(exc).lower()
        now = datetime.now(UTC)
        if NOT_MODIFIED in why:
            await self.store.mark_sent(item.item_id, now)
            return
        retry: list[dict[str, Any]] = []
        if TOO_LONG in why and text:
            parts = split_html(text, MAX_MESSAGE_CHARS)
            if item.kind is OutboxKind.EDIT:
                retry = [{**item.payload, "text": parts[0] + "\n…", "shortened": True}]
            else:
                retry = [{"text": part} for part in parts[:-1]] + [{**item.payload, "text": parts[-1]}]
        elif CANNOT_PARSE in why and text and not item.payload.get("plain"):
            retry = [{**item.payload, "text": plain_text(text), "plain": True}]
        log.error("Telegram refused outbox item %s for chat %s: %s", item.item_id, item.chat_id, exc)
        if retry and not item.payload.get("shortened"):
            for payload in retry:
                kind = item.kind if "buttons" in payload or item.kind is OutboxKind.EDIT else OutboxKind.TEXT
                await self.store.enqueue(kind, item.chat_id, payload, now, item.signal_id)
        elif item.kind is not OutboxKind.EDIT and not item.payload.get("notice"):  # a lost edit's message is there
            notice = f"⚠️ A message could not be delivered (Telegram: {exc}). /status shows the bot's state."
            await self.store.enqueue(
                OutboxKind.TEXT, item.chat_id, {"text": notice, "plain": True, "notice": True}, now
            )
        await self.store.mark_sent(item.item_id, now)

    async def _retry_later(self, item: OutboxItem, delay: float, error: str) -> None:
        error = self.redactor.redact(error)[:500]  # an HTTP error can carry the request URL, token included
        await self.store.mark_failed_attempt(item.item_id, datetime.now(UTC) + timedelta(seconds=delay), error)

    async def _send(self, item: OutboxItem) -> None:
        payload = item.payload
        keyboard = markup(payload.get("buttons"))
        mode = None if payload.get("plain") else ParseMode.HTML
        if item.kind is OutboxKind.EDIT:
            await self._edit(item.chat_id, int(payload["message_id"]), payload["text"], mode, keyboard)
        else:
            message = await self._send_new(item, mode, keyboard)
            shown = list(payload.get("signal_ids", []))
            for signal_id in shown:
                await self.store.add_signal_message(signal_id, item.chat_id, message.message_id)
            if shown and self.after_signals is not None:  # decided while this copy was on its way
                await self.after_signals(shown)
        await self.store.mark_sent(item.item_id, datetime.now(UTC))

    async def _edit(self, chat: int, message_id: int, text: str, mode: str | None, keyboard: Any) -> None:
        """Edit a message's text, or its caption when it is a photo (shortened to fit a caption)."""
        try:
            await self.bot.edit_message_text(
                chat_id=chat, message_id=message_id, text=text, parse_mode=mode, reply_markup=keyboard
            )
        except BadRequest as exc:
            if NO_TEXT not in str(exc).lower():
                raise
            await self.bot.edit_message_caption(
                chat_id=chat, message_id=message_id, caption=_caption(text), parse_mode=mode, reply_markup=keyboard
            )

    async def _send_new(self, item: OutboxItem, mode: str | None, keyboard: Any) -> Any:
        """Send a new message: a photo with the text as its caption when it has a chart and the text fits one (else
        the photo first, then the text with the buttons); a chart file that is gone leaves the text alone."""
        payload = item.payload
        text = payload["text"]
        photo = _chart_bytes(payload.get("photo"))
        if photo is not None and len(plain_text(text)) <= MAX_CAPTION_CHARS:
            return await self.bot.send_photo(
                chat_id=item.chat_id, photo=photo, caption=text, parse_mode=mode, reply_markup=keyboard
            )
        if photo is not None:
            await self.bot.send_photo(chat_id=item.chat_id, photo=photo, caption=str(payload.get("photo_caption", "")))
        return await self.bot.send_message(chat_id=item.chat_id, text=text, parse_mode=mode, reply_markup=keyboard)


def _chart_bytes(path: object) -> bytes | None:
    if not isinstance(path, str):
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        log.warning("chart %s is gone (%s); the message goes as text", path, exc)
        return None


def _caption(text: str) -> str:
    """`text` cut to fit a photo's caption, at a line end."""
    if len(plain_text(text)) <= MAX_CAPTION_CHARS:
        return text
    return split_html(text, MAX_CAPTION_CHARS - 200)[0] + "\n…"
