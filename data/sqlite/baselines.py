"""Validation baselines and shadow orders."""

from __future__ import annotations

from http import HTTPMethod

from data.shadow_orders import ShadowOrder
from data.sqlite.codecs import _check_positive_int, _check_text, _encode_amount, _encode_ts, _json, _ts_key
from data.sqlite.connection import StoreBase
from data.sqlite.queries import _Db, _fetchall, _rowcount, decoded
from data.sqlite.records import _decode_baseline, _decode_shadow_order
from engine.domain import (
    Side,
)
from engine.systems import Baseline
from engine.trading import Fill


class BaselineBook(StoreBase):
    """Validation baselines and shadow orders."""

    # --- baselines (BotStore) ---------------------------------------------------------------------------------

    async def save_baseline(self, baseline: Baseline) -> int:
        """Store a validation result as the next version for its strategy x instrument; return the version."""
        for name in ("strategy", "symbol", "interval", "data_source"):
            _check_text(getattr(baseline, name), name)
        if baseline.data_to < baseline.data_from:
            raise ValueError(f"baseline data range ends {baseline.data_to} before it starts {baseline.data_from}")
        key = (baseline.strategy, baseline.symbol, baseline.interval)
        row = (
            _encode_ts(baseline.created_at, "created_at"),
            baseline.data_source,
            _encode_ts(baseline.data_from, "data_from"),
            _encode_ts(baseline.data_to, "data_to"),
            _json(baseline.params),
            int(baseline.passed),
            _json(list(baseline.reasons)),
            _json(baseline.metrics),
            _json([float(r) for r in baseline.r_multiples]),
            baseline.fingerprint,
            _json(dict(baseline.system)),
            None if baseline.oos_from is None else _encode_ts(baseline.oos_from, "oos_from"),
            None if baseline.score is None else _json(baseline.score.to_json()),
        )

        async def write(db: _Db) -> int:
            rows = await _fetchall(
                db,
                "SELECT COALESCE(MAX(version), 0) FROM baselines WHERE strategy = ? AND symbol = ? AND interval = ?",
                key,
            )
            version = int(rows[0][0]) + 1
            await db.insert(
                "INSERT INTO baselines (strategy, symbol, interval, version, created_at, data_source, data_from,"
                " data_to, params, passed, reasons, metrics, r_multiples, fingerprint, system, oos_from, score)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, version, *row),
            )
            return version

        return await self._transact(f"save the baseline of {baseline.strategy} on {baseline.symbol}", write)

    async def baselines(self) -> list[Baseline]:
        """The newest validation result of every system (fingerprint) of every strategy x instrument."""
        sql = (
            "SELECT * FROM baselines b WHERE version = (SELECT MAX(version) FROM baselines c WHERE"
            " c.strategy = b.strategy AND c.symbol = b.symbol AND c.interval = b.interval"
            " AND c.fingerprint = b.fingerprint) ORDER BY strategy, symbol, interval, version"
        )
        async with self._read("read the baselines of every system") as db:
            rows = await _fetchall(db, sql)
        return await decoded(rows, _decode_baseline)

    async def latest_baselines(self) -> list[Baseline]:
        """The newest validation result of every strategy x instrument."""
        sql = (
            "SELECT * FROM baselines b WHERE version = (SELECT MAX(version) FROM baselines c WHERE"
            " c.strategy = b.strategy AND c.symbol = b.symbol AND c.interval = b.interval)"
            " ORDER BY strategy, symbol, interval"
        )
        async with self._read("read the latest baselines") as db:
            rows = await _fetchall(db, sql)
        return await decoded(rows, _decode_baseline)

    # --- shadow orders (shadow mode) ---------------------------------------------------------------------------

    async def record_shadow_order(self, order: ShadowOrder) -> bool:
        """Store the request shadow mode kept back; False (the first record stands) if this order has one already."""
        if not isinstance(order, ShadowOrder):
            raise TypeError(f"order must be a ShadowOrder, was {type(order).__name__}")
        cid = order.client_order_id
        params = (
            _check_text(cid, "client_order_id"),
            _check_text(order.broker, "broker"),
            _check_text(order.symbol, "symbol"),
            Side(order.side).value,
            _encode_amount(order.quantity, f"shadow order {cid} quantity", positive=True),
            None if order.method is None else HTTPMethod(order.method).value,
            order.path,
            order.body_json,
            order.refusal,
            _encode_ts(order.created_at, "created_at"),
        )

        async def write(db: _Db) -> bool:
            return bool(
                await _rowcount(
                    db,
                    "INSERT INTO shadow_orders (client_order_id, broker, symbol, side, quantity, method, path,"
                    " body_json, refusal, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (client_order_id) DO NOTHING",
                    params,
                )
            )

        return await self._transact(f"record the shadow order {cid}", write)

    async def shadow_orders(self, limit: int = 20) -> list[tuple[ShadowOrder, Fill | None]]:
        """The newest `limit` shadow orders, newest first, each with the paper fill of the same order (or None)."""
        _check_positive_int(limit, "limit")
        sql = (
            "SELECT s.*, o.fill_price, o.fill_quantity, o.fees, o.filled_at FROM shadow_orders s"
            " LEFT JOIN orders o ON o.client_order_id = s.client_order_id AND o.filled_at IS NOT NULL"
            f" ORDER BY {_ts_key('s.created_at')} DESC, s.client_order_id DESC LIMIT ?"
        )
        async with self._read("read the shadow orders") as db:
            rows = await _fetchall(db, sql, (limit,))
        return [_decode_shadow_order(row) for row in rows]
