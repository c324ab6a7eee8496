"""Queue what the bot wants to tell the trader in the persisted outbox; a sender delivers it later.

Services call the notifier and never the Telegram library, so a Telegram outage or a restart delays a
message but never loses it. Every text goes through a `Redactor` before it is stored, so a token inside
an error message is masked in the outbox (the database) and in the chat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from bot.services.events import Event
from bot.services.users import UserDirectory
from bot.telegram.events import render
from bot.telegram.messages import digest_pages, signal_message, split_html
from data.outbox import OutboxKind, OutboxStore
from data.redaction import Redactor
from engine.domain import Instrument, SignalStatus
from engine.ports import Clock, SignalEstimate, SignalRecord

log = logging.getLogger(__name__)

CHART_DAYS = 7  # a chart file is kept this long: enough for any retry of its message


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
        charts_dir: Path | None = None,
        users: UserDirectory | None = None,
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
        self.users = users  # the names shown for who decided a signal or moved a position
        self.charts_dir = charts_dir  # where signal charts wait for their message; None: text only

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

    async def signals(self, records: Sequence[SignalRecord], charts: Mapping[str, bytes] | None = None) -> None:
        """Send these signals to every chat: one message, or a digest in pages that each fit a message.

        A signal with a chart goes out as a photo with its text as the caption and the buttons; a digest page
        shows the chart of its best charted entry.
        """
        if not records:
            return
        estimates = await self.store.estimates([r.signal_id for r in records])
        pages = digest_pages(records, self.instruments, self.freeze, estimates)
        if len(pages) > 1:
            await self.text(f"<b>{len(records)} new signals</b> in {len(pages)} messages, best first:")
        for page in pages:
            ids = [r.signal_id for r in page]
            rendered = signal_message(page, self.instruments, self.freeze, estimates)
            payload: dict[str, Any] = {"text": rendered.text, "buttons": rendered.buttons, "signal_ids": ids}
            best = next((r for r in page if (charts or {}).get(r.signal_id)), None)
            if best is not None and charts is not None and (path := self._keep_chart(best.signal_id, charts)):
                setup = best.scored.setup
                payload["photo"] = str(path)
                payload["photo_caption"] = f"{setup.symbol} {setup.timeframe} {setup.strategy} {setup.side.value}"
            for chat in self.chats:
                await self._enqueue(OutboxKind.SIGNAL, chat, payload, ids[0])
        self.wake()

    def _keep_chart(self, signal_id: str, charts: Mapping[str, bytes]) -> Path | None:
        """Write a signal's chart where its message will find it; None (text only) when that fails."""
        if self.charts_dir is None:
            return None
        try:
            self.charts_dir.mkdir(parents=True, exist_ok=True)
            self._prune_charts()
            path = self.charts_dir / f"{signal_id}.png"
            path.write_bytes(charts[signal_id])
        except OSError as exc:  # a full disk costs the picture, never the signal
            log.warning("the chart of %s could not be kept (%s); sent as text", signal_id, exc)
            return None
        return path

    def _prune_charts(self) -> None:
        assert self.charts_dir is not None
        old = time.time() - CHART_DAYS * 86_400
        for path in self.charts_dir.glob("*.png"):
            if path.stat().st_mtime < old:
                path.unlink(missing_ok=True)

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
        by = getattr(event, "by", None)
        names = {} if self.users is None or not isinstance(by, int) else await self.users.names([by])
        html, buttons = render(event, names)
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
            names = {} if self.users is None else await self.users.names(r.decided_by for r in records)
            rendered = signal_message(records, self.instruments, self.freeze, estimates, names)
            payload = {"text": rendered.text, "buttons": rendered.buttons, "message_id": message_id}
            await self._enqueue(OutboxKind.EDIT, chat, payload, signal_id)
        self.wake()
