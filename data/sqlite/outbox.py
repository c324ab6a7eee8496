"""The persisted outbox of chat messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from data.outbox import OutboxItem, OutboxKind
from data.sqlite.codecs import (
    _check_int,
    _check_positive_int,
    _check_text,
    _encode_payload,
    _encode_ts,
    _encode_ts_key,
    _enum_arg,
    _ts_key,
)
from data.sqlite.connection import StoreBase
from data.sqlite.errors import StoreError
from data.sqlite.queries import _Db, _fetchall, _require_outbox_item, _rowcount, _scalar
from data.sqlite.records import _decode_outbox_item


class Outbox(StoreBase):
    """The persisted outbox of chat messages."""

    # --- outbox (BotStore) -----------------------------------------------------------------------------------

    async def enqueue(
        self, kind: OutboxKind, chat_id: int, payload: dict[str, Any], at: datetime, signal_id: str | None = None
    ) -> int:
        """Persist a message to send and return its id; `payload` must round-trip through JSON unchanged."""
        params = (
            _enum_arg(OutboxKind, kind, "kind").value,
            _check_int(chat_id, "chat_id"),
            _encode_payload(payload),
            None if signal_id is None else _check_text(signal_id, "signal_id"),
            _encode_ts(at, "at"),
        )

        async def write(db: _Db) -> int:
            item_id = await db.insert(
                "INSERT INTO outbox (kind, chat_id, payload, signal_id, created_at) VALUES (?, ?, ?, ?, ?)", params
            )
            if item_id is None:
                raise StoreError("SQLite did not report the id of the new outbox item")
            return item_id

        return await self._transact("enqueue a message", write)

    async def due_messages(self, now: datetime, limit: int = 50) -> list[OutboxItem]:
        """Unsent items whose next attempt is due (never tried, or scheduled at or before `now`), oldest first."""
        due = _encode_ts_key(now, "now")
        _check_positive_int(limit, "limit")
        async with self._read("read the due messages") as db:
            rows = await _fetchall(
                db,
                "SELECT * FROM outbox WHERE sent_at IS NULL"
                f" AND (next_attempt_at IS NULL OR {_ts_key('next_attempt_at')} <= ?) ORDER BY id LIMIT ?",
                (due, limit),
            )
        return [_decode_outbox_item(row) for row in rows]

    async def mark_sent(self, item_id: int, at: datetime) -> None:
        """Mark the item sent; marking it again is a no-op (the first time is kept)."""
        params = (_encode_ts(at, "at"), _check_positive_int(item_id, "item_id"))

        async def write(db: _Db) -> None:
            if not await _rowcount(db, "UPDATE outbox SET sent_at = ? WHERE id = ? AND sent_at IS NULL", params):
                await _require_outbox_item(db, item_id)

        await self._transact(f"mark outbox item {item_id} sent", write)

    async def mark_failed_attempt(self, item_id: int, next_attempt_at: datetime, error: str) -> None:
        """Count a failed send and schedule the next one (a no-op once the item was sent)."""
        if not isinstance(error, str):
            raise TypeError(f"error must be a string, was {type(error).__name__}")
        params = (_encode_ts(next_attempt_at, "next_attempt_at"), error, _check_positive_int(item_id, "item_id"))

        async def write(db: _Db) -> None:
            if not await _rowcount(
                db,
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE id = ? AND sent_at IS NULL",
                params,
            ):
                await _require_outbox_item(db, item_id)

        await self._transact(f"record a failed attempt of outbox item {item_id}", write)

    async def outbox_size(self) -> int:
        """How many items are not sent yet."""
        async with self._read("count the unsent messages") as db:
            return int(await _scalar(db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
