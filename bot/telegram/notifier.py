"""Queue what the bot wants to tell the trader in the persisted outbox; a sender delivers it later.

Services call the notifier and never the Telegram library, so a Telegram outage or a restart delays a
message but never loses it. Every text goes through a `Redactor` before it is stored, so a token inside
an error message is masked in the outbox (the database) and in the chat.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from bot.services.events import Event
from bot.telegram.events import render
from bot.telegram.messages import digest_pages, signal_message, split_html
from data.outbox import OutboxKind, OutboxStore
from data.redaction import Redactor
from engine.domain import Instrument, SignalStatus
from engine.ports import Clock, SignalEstimate, SignalRecord


class NotifierStore(OutboxStore, Protocol):
    """What the notifier reads and writes: the outbox, and the signals and estimates its messages show."""

    async def signal(self, signal_id: str) -> SignalRecord | None: ...

    async def estimates(self, signal_ids: Collection[str]) -> dict[str, SignalEstimate]: ...


class Notifier:
    """Renders messages and puts them in the outbox for every target chat."""

    def __init__(
        self,
        store: NotifierStore,
        chats: Sequence[int],
        instruments: Mapping[str, Instrument],
        clock: Clock,
        wake: Callable[[], None] = lambda: None,
        freeze: Mapping[str, Decimal] | None = None,
        *,
        redactor: Redactor | None = None,
    ) -> None:
        if not chats:
            raise ValueError("the notifier needs at least one chat to talk to")
        self.store = store
        self.chats = tuple(chats)
        self.instruments = dict(instruments)
        self.clock = clock
        self.wake = wake
        self.freeze = dict(freeze or {})  # lots per order by symbol: larger signals go out as child orders
        self.redactor = redactor if redactor is not None else Redactor()  # default: token shapes only

    def _now(self) -> datetime:
        return self.clock.now()

    async def _enqueue(
        self, kind: OutboxKind, chat: int, payload: Mapping[str, Any], signal_id: str | None = None
    ) -> None:
        """Store one outgoing message with its text redacted: the only way anything reaches the outbox."""
        stored = dict(payload)
        if isinstance(stored.get("text"), str):
            stored["text"] = self.redactor.redact(stored["text"])
        await self.store.enqueue(kind, chat, stored, self._now(), signal_id)

    async def signals(self, records: Sequence[SignalRecord]) -> None:
        """Send these signals to every chat: one message, or a digest in pages that each fit a message."""
        if not records:
            return
        estimates = await self.store.estimates([r.signal_id for r in records])
        pages = digest_pages(records, self.instruments, self.freeze, estimates)
        if len(pages) > 1:
            await self.text(f"<b>{len(records)} new signals</b> in {len(pages)} messages, best first:")
        for page in pages:
            ids = [r.signal_id for r in page]
            rendered = signal_message(page, self.instruments, self.freeze, estimates)
            payload = {"text": rendered.text, "buttons": rendered.buttons, "signal_ids": ids}
            for chat in self.chats:
                await self._enqueue(OutboxKind.SIGNAL, chat, payload, ids[0])
        self.wake()

    async def text(self, html: str, buttons: list[list[list[str]]] | None = None) -> None:
        """Tell every chat something (fills, exits, alerts), with inline buttons when given; a text longer than a
        message is sent as several, the buttons on the last."""
        parts = split_html(html)
        for n, part in enumerate(parts, start=1):
            payload: dict[str, object] = {"text": part}
            if buttons and n == len(parts):
                payload["buttons"] = buttons
            for chat in self.chats:
                await self._enqueue(OutboxKind.TEXT, chat, payload)
        self.wake()

    async def announce(self, event: Event) -> None:
        """Tell every chat what a service reports, rendered for the chat."""
        html, buttons = render(event)
        await self.text(html, buttons)

    async def refresh_decided(self, signal_ids: Sequence[str]) -> None:
        """Re-render the messages of any of these signals already decided (a copy delivered after the decision
        must not keep live buttons)."""
        for signal_id in signal_ids:
            record = await self.store.signal(signal_id)
            if record is not None and record.status is not SignalStatus.PENDING:
                await self.refresh(signal_id)

    async def refresh(self, signal_id: str) -> None:
        """Re-render every message that shows this signal, so it shows the decision and loses stale buttons."""
        for chat, message_id in await self.store.signal_messages(signal_id):
            ids = await self.store.message_signals(chat, message_id)
            records = [r for r in [await self.store.signal(i) for i in ids] if r is not None]
            if not records:
                continue
            estimates = await self.store.estimates(ids)
            rendered = signal_message(records, self.instruments, self.freeze, estimates)
            payload = {"text": rendered.text, "buttons": rendered.buttons, "message_id": message_id}
            await self._enqueue(OutboxKind.EDIT, chat, payload, signal_id)
        self.wake()
