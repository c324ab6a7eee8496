"""The bot's key-value state."""

from __future__ import annotations

from data.sqlite.audit import append_audit
from data.sqlite.codecs import _SET_STATE_SQL, _check_text, _encode_ts
from data.sqlite.connection import StoreBase
from data.sqlite.queries import _Db, _execute, _fetchall
from engine.audit import AuditEvent, AuditKind


class KeyValueState(StoreBase):
    """The bot's key-value state."""

    # --- bot state (BotStore) --------------------------------------------------------------------------------

    async def get_state(self, key: str) -> str | None:
        _check_text(key, "key")
        async with self._read(f"read state {key}") as db:
            rows = await _fetchall(db, "SELECT value FROM bot_state WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_state(self, key: str, value: str, *, audit_by: str | None = None, detail: str | None = None) -> None:
        """Insert or replace the value (updated_at is the wall-clock time, for people reading the file).

        With `audit_by` (a user id or 'bot') the change is a setting: the audit trail records it (`detail`, or the
        old and new values) in the same transaction.
        """
        _check_text(key, "key")
        if not isinstance(value, str):
            raise TypeError(f"state {key} value must be a string, was {type(value).__name__}")
        now = self._now()
        params = (key, value, _encode_ts(now, "updated_at"))

        async def set_and_audit(db: _Db) -> None:
            old = await _fetchall(db, "SELECT value FROM bot_state WHERE key = ?", (key,))
            await _execute(db, _SET_STATE_SQL, params)
            if audit_by is not None:
                was = str(old[0][0]) if old else "unset"
                said = detail if detail is not None else f"{key}: {was} -> {value}"
                await append_audit(db, AuditEvent(now, AuditKind.SETTING_CHANGED, audit_by, key, said))

        await self._transact(f"set state {key}", set_and_audit)
