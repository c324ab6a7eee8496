"""Hedged option spreads and their leg fills (`engine.ports.SpreadBook`)."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from data.sqlite.codecs import _check_text, _encode_ts, _json
from data.sqlite.connection import StoreBase
from data.sqlite.errors import CorruptRecordError
from data.sqlite.queries import _Db, _execute, _fetchall, _rowcount
from data.sqlite.records import _decode_ts
from engine.domain import Side
from engine.options import LegFill, SpreadPlan
from engine.spread_book import SpreadRecord, SpreadStatus
from engine.trading import ExitReason

_FILLS_SQL = "SELECT fill FROM spread_fills WHERE spread_id = ? ORDER BY rowid"


class SpreadLedger(StoreBase):
    """Spreads by compare-and-set on their status; their leg fills once each, by tag."""

    async def offer_spread(self, record: SpreadRecord) -> bool:
        """Store a new spread; False when one with its id exists (a signal is offered once)."""
        if record.status is not SpreadStatus.PENDING or record.fills:
            raise ValueError(f"spread {record.spread_id} must be a new pending spread without fills")
        params = (record.spread_id, record.status.value, _encode_ts(self._now(), "updated_at"), _encode(record))

        async def write(db: _Db) -> bool:
            sql = "INSERT OR IGNORE INTO spreads (spread_id, status, updated_at, record) VALUES (?, ?, ?, ?)"
            return await _rowcount(db, sql, params) == 1

        return await self._transact(f"offer spread {record.spread_id}", write)

    async def move_spread(self, record: SpreadRecord, expected: SpreadStatus) -> bool:
        """Store `record` iff the spread is in `expected` now (exactly one caller wins a move)."""
        params = (record.status.value, _encode_ts(self._now(), "updated_at"), _encode(record), record.spread_id)

        async def write(db: _Db) -> bool:
            sql = "UPDATE spreads SET status = ?, updated_at = ?, record = ? WHERE spread_id = ? AND status = ?"
            return await _rowcount(db, sql, (*params, expected.value)) == 1

        return await self._transact(f"move spread {record.spread_id} to {record.status}", write)

    async def add_spread_fills(self, spread_id: str, fills: Iterable[LegFill]) -> None:
        """Record leg fills (a fill already stored under its tag is kept as it was)."""
        _check_text(spread_id, "spread_id")
        rows = [(f.tag, spread_id, _json(_fill_json(f))) for f in fills]

        async def write(db: _Db) -> None:
            for row in rows:
                await _execute(db, "INSERT OR IGNORE INTO spread_fills (tag, spread_id, fill) VALUES (?, ?, ?)", row)

        await self._transact(f"record the leg fills of spread {spread_id}", write)

    async def spread(self, spread_id: str) -> SpreadRecord | None:
        _check_text(spread_id, "spread_id")
        async with self._read(f"read spread {spread_id}") as db:
            rows = await _fetchall(db, "SELECT record FROM spreads WHERE spread_id = ?", (spread_id,))
            fills = await _fetchall(
                db, "SELECT fill FROM spread_fills WHERE spread_id = ? ORDER BY rowid", (spread_id,)
            )
        return _decode(rows[0][0], [f[0] for f in fills]) if rows else None

    async def spreads(self, statuses: Collection[SpreadStatus]) -> list[SpreadRecord]:
        """Spreads in these statuses, oldest signal first."""
        marks = ",".join("?" * len(statuses))
        async with self._read("list spreads") as db:
            rows = await _fetchall(
                db, f"SELECT spread_id, record FROM spreads WHERE status IN ({marks})", [s.value for s in statuses]
            )
            found = []
            for spread_id, record in rows:
                fills = await _fetchall(db, _FILLS_SQL, (spread_id,))
                found.append(_decode(record, [f[0] for f in fills]))
        return sorted(found, key=lambda r: (r.signal_time, r.spread_id))


def _fill_json(f: LegFill) -> dict[str, Any]:
    return {
        "tag": f.tag,
        "tradingsymbol": f.tradingsymbol,
        "buy": f.buy,
        "quantity": f.quantity,
        "price": str(f.price),
        "modelled": f.modelled,
    }


def _encode(r: SpreadRecord) -> str:
    p = r.plan
    return _json(
        {
            "spread_id": r.spread_id,
            "system": r.system,
            "symbol": r.symbol,
            "rule": r.rule,
            "side": r.side.value,
            "signal_time": _encode_ts(r.signal_time, "signal_time"),
            "entry": str(r.entry),
            "stop": str(r.stop),
            "expiry": r.expiry.isoformat(),
            "plan": {
                "hedge_symbol": p.hedge_symbol,
                "main_symbol": p.main_symbol,
                "quantity": p.quantity,
                "lot": p.lot,
                "freeze": p.freeze,
            },
            "status": r.status.value,
            "venue": r.venue,
            "zones": r.zones,
            "expires_at": None if r.expires_at is None else _encode_ts(r.expires_at, "expires_at"),
            "decided_by": r.decided_by,
            "exit_time": None if r.exit_time is None else _encode_ts(r.exit_time, "exit_time"),
            "exit_level": None if r.exit_level is None else str(r.exit_level),
            "exit_reason": None if r.exit_reason is None else r.exit_reason.value,
            "reason": r.reason,
        }
    )


def _decode(text: str, fills: list[str]) -> SpreadRecord:
    try:
        d = json.loads(text)
        p = d["plan"]
        legs = []
        for raw in fills:
            f = json.loads(raw)
            legs.append(
                LegFill(
                    f["tag"],
                    f["tradingsymbol"],
                    bool(f["buy"]),
                    int(f["quantity"]),
                    Decimal(f["price"]),
                    bool(f["modelled"]),
                )
            )
        return SpreadRecord(
            spread_id=d["spread_id"],
            system=d["system"],
            symbol=d["symbol"],
            rule=d["rule"],
            side=Side(d["side"]),
            signal_time=_decode_ts(d["signal_time"], "spread signal_time"),
            entry=Decimal(d["entry"]),
            stop=Decimal(d["stop"]),
            expiry=date.fromisoformat(d["expiry"]),
            plan=SpreadPlan(
                d["spread_id"], p["hedge_symbol"], p["main_symbol"], int(p["quantity"]), int(p["lot"]), int(p["freeze"])
            ),
            status=SpreadStatus(d["status"]),
            venue=d["venue"],
            zones=dict(d.get("zones") or {}),
            expires_at=None if d["expires_at"] is None else _decode_ts(d["expires_at"], "spread expires_at"),
            decided_by=d["decided_by"],
            exit_time=None if d["exit_time"] is None else _decode_ts(d["exit_time"], "spread exit_time"),
            exit_level=None if d["exit_level"] is None else Decimal(d["exit_level"]),
            exit_reason=None if d["exit_reason"] is None else ExitReason(d["exit_reason"]),
            reason=d["reason"],
            fills=tuple(legs),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise CorruptRecordError(f"spread record is unreadable: {exc}") from exc
