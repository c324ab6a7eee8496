"""The chat outbox's records and the store it needs: what the bot must say, persisted until it is delivered.

Not a trading concept, so not in `engine/`: the Telegram adapter queues and delivers these, the SQLite store keeps
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class OutboxKind(StrEnum):
    SIGNAL = "signal"  # a signal message with Approve / Reject buttons
    TEXT = "text"  # a plain HTML message (fills, exits, alerts, digests)
    EDIT = "edit"  # edit an existing message's text and drop its buttons


@dataclass(frozen=True)
class OutboxItem:
    """A message waiting to be sent (persisted, so a Telegram outage or a restart loses nothing)."""

    item_id: int
    kind: OutboxKind
    chat_id: int
    payload: dict[str, Any]
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    signal_id: str | None = None
    last_error: str | None = None


class OutboxStore(Protocol):
    """The slice of the store the outbox needs: its items, and which messages show which signals."""

    async def add_signal_message(self, signal_id: str, chat_id: int, message_id: int) -> None: ...

    async def signal_messages(self, signal_id: str) -> list[tuple[int, int]]:
        """(chat_id, message_id) of every message that shows this signal."""
        ...

    async def message_signals(self, chat_id: int, message_id: int) -> list[str]:
        """Signal ids shown by one message (several for a digest), in the order they were added."""
        ...

    async def enqueue(
        self, kind: OutboxKind, chat_id: int, payload: dict[str, Any], at: datetime, signal_id: str | None = None
    ) -> int: ...

    async def due_messages(self, now: datetime, limit: int = 50) -> list[OutboxItem]:
        """Unsent items whose next attempt is due, oldest first."""
        ...

    async def mark_sent(self, item_id: int, at: datetime) -> None: ...

    async def mark_failed_attempt(self, item_id: int, next_attempt_at: datetime, error: str) -> None: ...

    async def outbox_size(self) -> int: ...
