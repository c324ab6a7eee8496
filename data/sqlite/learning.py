"""Drift alerts, pair controls, learned models and signal estimates."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from datetime import datetime
from typing import Any

from data.sqlite.audit import append_audit
from data.sqlite.codecs import (
    _IN_CHUNK,
    _SET_STATE_SQL,
    ACTIVE_MODEL_KEY,
    _check_int,
    _check_text,
    _encode_payload,
    _encode_ts,
    _json,
    _optional_int,
)
from data.sqlite.connection import StoreBase
from data.sqlite.queries import _Db, _execute, _fetchall
from data.sqlite.records import _decode_control, _decode_model, _decode_ts
from engine.audit import BOT_ACTOR, AuditEvent, AuditKind, actor_of
from engine.controls import ControlSource, DriftAlert, PairControl, PairState
from engine.ports import ModelVersion, SignalEstimate
from engine.sizing import SizingSummary
from engine.systems import PairValidation


class LearningRecords(StoreBase):
    """Drift alerts, pair controls, learned models and signal estimates."""

    # --- drift alerts, pair controls, learned models, signal estimates --------------------------------------------

    async def record_drift_alert(self, alert: DriftAlert) -> None:
        """Store an alert told to the chat (the cooldown reads the newest per pair, across restarts)."""
        params = (
            _check_text(alert.strategy, "strategy"),
            _check_text(alert.symbol, "symbol"),
            _check_text(alert.severity, "severity"),
            _encode_ts(alert.alerted_at, "alerted_at"),
            alert.summary,
        )

        async def write(db: _Db) -> None:
            await _execute(
                db,
                "INSERT INTO drift_alerts (strategy, symbol, severity, alerted_at, summary) VALUES (?, ?, ?, ?, ?)",
                params,
            )

        await self._transact(f"record a drift alert for {alert.strategy} on {alert.symbol}", write)

    async def last_drift_alert(self, strategy: str, symbol: str) -> DriftAlert | None:
        """The newest alert told for this pair, or None."""
        sql = "SELECT * FROM drift_alerts WHERE strategy = ? AND symbol = ? ORDER BY id DESC LIMIT 1"
        async with self._read(f"read the last drift alert of {strategy} on {symbol}") as db:
            rows = await _fetchall(db, sql, (strategy, symbol))
        if not rows:
            return None
        row = rows[0]
        where = f"drift alert {row['id']}"
        return DriftAlert(
            row["strategy"], row["symbol"], row["severity"], _decode_ts(row["alerted_at"], where), row["summary"]
        )

    async def set_pair_control(self, control: PairControl, expected_id: int | None = None) -> PairControl | None:
        """Append a state change; with `expected_id`, only while that record is still the pair's newest."""
        if not isinstance(control, PairControl):
            raise TypeError(f"control must be a PairControl, was {type(control).__name__}")
        params = (
            _check_text(control.strategy, "strategy"),
            _check_text(control.symbol, "symbol"),
            PairState(control.state).value,
            ControlSource(control.source).value,
            _check_text(control.reason, "reason"),
            _encode_ts(control.at, "at"),
            _optional_int(control.by, "by"),
        )

        async def write(db: _Db) -> PairControl | None:
            if expected_id is not None:
                rows = await _fetchall(
                    db,
                    "SELECT MAX(id) FROM pair_controls WHERE strategy = ? AND symbol = ?",
                    (control.strategy, control.symbol),
                )
                if rows[0][0] != expected_id:
                    return None
            control_id = await db.insert(
                "INSERT INTO pair_controls (strategy, symbol, state, source, reason, at, by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                params,
            )
            subject = f"{control.strategy}/{control.symbol}"
            detail = f"{subject}: {PairState(control.state).value} ({control.source}: {control.reason})"
            event = AuditEvent(control.at, AuditKind.PAIR_CONTROL, actor_of(control.by), subject, detail)
            await append_audit(db, event)
            assert control_id is not None
            return dataclasses.replace(control, control_id=control_id)

        return await self._transact(f"change the state of {control.strategy} on {control.symbol}", write)

    async def pair_controls(self) -> dict[tuple[str, str], PairControl]:
        """The newest control record of every pair that has one."""
        sql = (
            "SELECT * FROM pair_controls p WHERE id = (SELECT MAX(id) FROM pair_controls q"
            " WHERE q.strategy = p.strategy AND q.symbol = p.symbol) ORDER BY strategy, symbol"
        )
        async with self._read("read the pair controls") as db:
            rows = await _fetchall(db, sql)
        return {(row["strategy"], row["symbol"]): _decode_control(row) for row in rows}

    async def pair_control(self, control_id: int) -> PairControl | None:
        async with self._read(f"read pair control {control_id}") as db:
            rows = await _fetchall(db, "SELECT * FROM pair_controls WHERE id = ?", (_check_int(control_id, "id"),))
        return _decode_control(rows[0]) if rows else None

    async def save_model(self, created_at: datetime, summary: dict[str, Any], model: dict[str, Any]) -> int:
        """Store a learning run's output as the next version and make it the active one; return the version."""
        params = (_encode_ts(created_at, "created_at"), _encode_payload(summary), _encode_payload(model))

        async def write(db: _Db) -> int:
            version = await db.insert(
                "INSERT INTO learned_models (created_at, summary, model) VALUES (?, ?, ?)", params
            )
            assert version is not None
            await _execute(db, _SET_STATE_SQL, (ACTIVE_MODEL_KEY, str(version), _encode_ts(self._now(), "now")))
            learned = f"v{version} active ({len(summary)} summary fields)"
            await append_audit(
                db, AuditEvent(created_at, AuditKind.MODEL_LEARNED, BOT_ACTOR, f"model v{version}", learned)
            )
            return version

        return await self._transact("save a learned model", write)

    async def active_model(self) -> ModelVersion | None:
        """The model learning uses now, or None before the first learning run."""
        async with self._read("read the active learned model") as db:
            rows = await _fetchall(
                db,
                "SELECT m.* FROM learned_models m"
                " JOIN bot_state s ON s.key = ? AND CAST(s.value AS INTEGER) = m.version",
                (ACTIVE_MODEL_KEY,),
            )
        return _decode_model(rows[0]) if rows else None

    async def rollback_model(self) -> ModelVersion | None:
        """Make the version before the active one active; None (nothing changed) when there is none."""

        async def write(db: _Db) -> ModelVersion | None:
            active = await _fetchall(db, "SELECT value FROM bot_state WHERE key = ?", (ACTIVE_MODEL_KEY,))
            if not active:
                return None
            rows = await _fetchall(
                db,
                "SELECT * FROM learned_models WHERE version < ? ORDER BY version DESC LIMIT 1",
                (int(active[0][0]),),
            )
            if not rows:
                return None
            previous = _decode_model(rows[0])
            now = _encode_ts(self._now(), "now")
            await _execute(db, _SET_STATE_SQL, (ACTIVE_MODEL_KEY, str(previous.version), now))
            back = f"v{active[0][0]} -> v{previous.version}"
            event = AuditEvent(self._now(), AuditKind.MODEL_ROLLED_BACK, BOT_ACTOR, f"model v{previous.version}", back)
            await append_audit(db, event)
            return previous

        return await self._transact("roll the learned model back", write)

    async def set_signal_validation(self, signal_id: str, validation: PairValidation) -> None:
        """Keep the system's validation status with a signal being offered (only while it is NEW)."""
        params = (validation.fingerprint or None, _json(validation.to_json()), _check_text(signal_id, "signal_id"))

        async def write(db: _Db) -> None:
            await _execute(
                db, "UPDATE signals SET fingerprint = ?, validation = ? WHERE signal_id = ? AND status = 'new'", params
            )

        await self._transact(f"keep the validation of {signal_id}", write)

    async def set_signal_sizing(self, signal_id: str, sizing: SizingSummary) -> None:
        """Keep what a signal's size means in money with it (only while it is NEW)."""
        params = (_json(sizing.to_json()), _check_text(signal_id, "signal_id"))

        async def write(db: _Db) -> None:
            await _execute(db, "UPDATE signals SET sizing = ? WHERE signal_id = ? AND status = 'new'", params)

        await self._transact(f"keep the sizing of {signal_id}", write)

    async def signal_fingerprints(self, signal_ids: Collection[str]) -> dict[str, str]:
        """The fingerprint of the system that found each signal, for the signals offered with one."""
        ids = sorted(set(signal_ids))
        out: dict[str, str] = {}
        async with self._read("read signal fingerprints") as db:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                where = f"fingerprint IS NOT NULL AND signal_id IN ({marks})"
                sql = f"SELECT signal_id, fingerprint FROM signals WHERE {where}"
                rows = await _fetchall(db, sql, chunk)
                out.update((str(r[0]), str(r[1])) for r in rows)
        return out

    async def save_estimate(self, estimate: SignalEstimate) -> None:
        """Store the win estimate shown with a signal (the first one stands)."""
        params = (
            _check_text(estimate.signal_id, "signal_id"),
            _check_int(estimate.model_version, "model_version"),
            estimate.p_win,
            _check_int(estimate.trades, "trades"),
            estimate.expected_r,
            estimate.note,
            estimate.learned_score,
        )

        async def write(db: _Db) -> None:
            await _execute(
                db,
                "INSERT INTO signal_estimates"
                " (signal_id, model_version, p_win, trades, expected_r, note, learned_score)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (signal_id) DO NOTHING",
                params,
            )

        await self._transact(f"save the estimate of {estimate.signal_id}", write)

    async def estimates(self, signal_ids: Collection[str]) -> dict[str, SignalEstimate]:
        ids = list(signal_ids)
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        async with self._read("read signal estimates") as db:
            rows = await _fetchall(db, f"SELECT * FROM signal_estimates WHERE signal_id IN ({marks})", ids)
        return {
            row["signal_id"]: SignalEstimate(
                row["signal_id"],
                row["model_version"],
                row["p_win"],
                row["trades"],
                row["expected_r"],
                row["note"],
                row["learned_score"],
            )
            for row in rows
        }
