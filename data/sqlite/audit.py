"""The audit trail: appended in the transaction of each change it records, read back newest first."""

from __future__ import annotations

from datetime import datetime

from data.sqlite.codecs import _check_text, _encode_ts, _encode_ts_key, _ts_key
from data.sqlite.connection import StoreBase
from data.sqlite.queries import _Db, _execute, _fetchall
from data.sqlite.records import _decode_ts
from engine.audit import BOT_ACTOR, SIGNAL_MOVES, AuditEvent, AuditKind, actor_of
from engine.domain import SignalStatus
from engine.trading import OrderRequest

MAX_DETAIL_CHARS = 2_000


async def append_audit(db: _Db, event: AuditEvent) -> None:
    """Append `event` (inside the caller's transaction: it commits or rolls back with the change)."""
    await _execute(
        db,
        "INSERT INTO audit_events (at, kind, actor, subject, detail) VALUES (?, ?, ?, ?, ?)",
        (
            _encode_ts(event.at, "audit time"),
            AuditKind(event.kind).value,
            _check_text(event.actor, "actor"),
            event.subject,
            event.detail[:MAX_DETAIL_CHARS],
        ),
    )


async def audit_signal_move(
    db: _Db, signal_id: str, to: SignalStatus, at: datetime, by: int | None, reason: str | None
) -> None:
    """Record a signal's move (offered, dropped, approved, rejected, expired, failed) with what it was and, for a
    decision, how long after the offer it came."""
    kind = SIGNAL_MOVES.get(to)
    if kind is None:
        return
    rows = await _fetchall(
        db, "SELECT symbol, strategy, side, offered_at FROM signals WHERE signal_id = ?", (signal_id,)
    )
    if not rows:
        return
    row = rows[0]
    detail = f"{row['symbol']} {row['strategy']} {row['side']}"
    if reason:
        detail += f": {reason}"
    if to in (SignalStatus.APPROVED, SignalStatus.REJECTED) and row["offered_at"] and by:
        latency = (at - _decode_ts(row["offered_at"], "offered_at")).total_seconds()
        detail += f" · {latency:.1f} s after the offer"
    await append_audit(db, AuditEvent(at, kind, actor_of(by), signal_id, detail))


async def audit_order(db: _Db, signal_id: str, request: OrderRequest, at: datetime) -> None:
    levels = "" if request.stop is None else f" stop {request.stop}"
    levels += "" if request.target is None else f" target {request.target}"
    detail = f"market {request.side.value} {request.quantity} {request.symbol}{levels}"
    await append_audit(db, AuditEvent(at, AuditKind.ORDER_SENT, BOT_ACTOR, signal_id, detail))


class AuditTrail(StoreBase):
    """The append-only audit trail."""

    async def audit(self, event: AuditEvent) -> None:
        """Append an event that no other write records (a login, the configuration loaded)."""
        await self._transact(f"audit {event.kind}", lambda db: append_audit(db, event))

    async def audit_events(self, since: datetime | None = None, limit: int = 50) -> list[AuditEvent]:
        """The newest `limit` events (at or after `since`), newest first."""
        sql, params = "SELECT * FROM audit_events", []
        if since is not None:
            sql += f" WHERE {_ts_key('at')} >= ?"
            params.append(_encode_ts_key(since, "since"))
        async with self._read("read the audit trail") as db:
            rows = await _fetchall(db, f"{sql} ORDER BY id DESC LIMIT ?", (*params, int(limit)))
        return [
            AuditEvent(
                _decode_ts(r["at"], "audit time"), AuditKind(r["kind"]), r["actor"], r["subject"], r["detail"], r["id"]
            )
            for r in rows
        ]
