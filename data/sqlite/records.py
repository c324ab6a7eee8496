"""How rows read back into the engine's records, exactly (decimals, UTC instants, JSON), or CorruptRecordError."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http import HTTPMethod
from typing import Any

from data.outbox import OutboxItem, OutboxKind
from data.shadow_orders import ShadowOrder
from data.sqlite.codecs import _E, _TIMESTAMP_RE
from data.sqlite.errors import CorruptRecordError
from engine.controls import ControlSource, PairControl, PairState
from engine.domain import (
    Interval,
    QualityScore,
    Rejection,
    RejectionKind,
    RunStatus,
    ScoreComponent,
    ScoredSetup,
    Setup,
    Side,
    SignalStatus,
)
from engine.ports import ModelVersion, RunSummary, SignalRecord
from engine.sizing import SizingSummary
from engine.systems import Baseline, PairValidation, ScoreEdge
from engine.trading import ExitReason, Fill, Trade, TradeKind


def _decode_baseline(row: sqlite3.Row) -> Baseline:
    where = f"baseline {row['strategy']}/{row['symbol']} v{row['version']}"
    score = None if row["score"] is None else ScoreEdge.from_json(_load_json(row["score"], f"{where} score"))
    return Baseline(
        strategy=str(row["strategy"]),
        symbol=str(row["symbol"]),
        interval=str(row["interval"]),
        params=dict(_load_json(row["params"], f"{where} params")),
        data_source=str(row["data_source"]),
        data_from=_decode_ts(row["data_from"], f"{where} data_from"),
        data_to=_decode_ts(row["data_to"], f"{where} data_to"),
        passed=bool(row["passed"]),
        reasons=tuple(str(r) for r in _load_json(row["reasons"], f"{where} reasons")),
        metrics=dict(_load_json(row["metrics"], f"{where} metrics")),
        r_multiples=tuple(float(r) for r in _load_json(row["r_multiples"], f"{where} r_multiples")),
        created_at=_decode_ts(row["created_at"], f"{where} created_at"),
        version=int(row["version"]),
        fingerprint=str(row["fingerprint"]),
        system=dict(_load_json(row["system"], f"{where} system")),
        oos_from=_decode_optional_ts(row["oos_from"], f"{where} oos_from"),
        score=score,
    )


def _decode_ts(value: object, where: str) -> datetime:
    if not isinstance(value, str) or not _TIMESTAMP_RE.fullmatch(value):
        raise CorruptRecordError(f"{where} is not an ISO-8601 UTC timestamp: {value!r}")
    try:
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    except ValueError as exc:
        raise CorruptRecordError(f"{where} is not a valid timestamp: {value!r}") from exc


def _decode_decimal(value: object, where: str) -> Decimal:
    if not isinstance(value, str):
        raise CorruptRecordError(f"{where} must be stored as decimal text, was {value!r}")
    try:
        result = Decimal(value)
    except InvalidOperation as exc:
        raise CorruptRecordError(f"{where} is not a decimal number: {value!r}") from exc
    if not result.is_finite():
        raise CorruptRecordError(f"{where} is not a finite decimal: {value!r}")
    return result


def _decode_enum(enum: type[_E], value: object, where: str) -> _E:
    if not isinstance(value, str):
        raise CorruptRecordError(f"{where} must be stored as text, was {value!r}")
    try:
        return enum(value)
    except ValueError as exc:
        raise CorruptRecordError(f"{where} has unknown value {value!r}") from exc


def _load_json(value: object, where: str) -> Any:
    if not isinstance(value, str):
        raise CorruptRecordError(f"{where} must be JSON text, was {value!r}")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise CorruptRecordError(f"{where} is not valid JSON: {exc}") from exc


def _load_string_list(value: object, where: str) -> tuple[str, ...]:
    items = _load_json(value, where)
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise CorruptRecordError(f"{where} must be a JSON list of strings, was {value!r}")
    return tuple(items)


def _decode_run(row: sqlite3.Row) -> RunSummary:
    run_id = int(row["id"])
    where = f"analysis run {run_id}"
    finished_at = row["finished_at"]
    return RunSummary(
        run_id=run_id,
        started_at=_decode_ts(row["started_at"], f"{where} started_at"),
        finished_at=None if finished_at is None else _decode_ts(finished_at, f"{where} finished_at"),
        as_of=_decode_ts(row["as_of"], f"{where} as_of"),
        data_source=row["data_source"],
        symbols=_load_string_list(row["symbols"], f"{where} symbols"),
        setups=int(row["setups_count"]),
        rejected_setups=int(row["rejected_setups_count"]),
        rejected_symbols=int(row["rejected_symbols_count"]),
        errors=_load_string_list(row["errors"], f"{where} errors"),
        status=_decode_enum(RunStatus, row["status"], f"{where} status"),
    )


def _decode_component(item: object, where: str) -> ScoreComponent:
    if not isinstance(item, dict) or set(item) != {"name", "value", "weight", "reason"}:
        raise CorruptRecordError(f"{where} component must have name, value, weight and reason, was {item!r}")
    name, value, weight, reason = item["name"], item["value"], item["weight"], item["reason"]
    numbers_ok = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (value, weight))
    if not isinstance(name, str) or not isinstance(reason, str) or not numbers_ok:
        raise CorruptRecordError(f"{where} component has wrong field types: {item!r}")
    try:
        return ScoreComponent(name, float(value), float(weight), reason)
    except ValueError as exc:
        raise CorruptRecordError(f"{where} component {name}: {exc}") from exc


def _decode_signal(row: sqlite3.Row) -> tuple[ScoredSetup, SignalStatus]:
    signal_id = row["signal_id"]
    where = f"signal {signal_id}"
    targets = _load_json(row["targets"], f"{where} targets")
    components = _load_json(row["components"], f"{where} components")
    if not isinstance(targets, list) or not isinstance(components, list):
        raise CorruptRecordError(f"{where} targets and components must be JSON lists")
    try:
        setup = Setup(
            strategy=row["strategy"],
            symbol=row["symbol"],
            side=_decode_enum(Side, row["side"], f"{where} side"),
            entry=_decode_decimal(row["entry"], f"{where} entry"),
            stop=_decode_decimal(row["stop"], f"{where} stop"),
            targets=tuple(_decode_decimal(t, f"{where} target") for t in targets),
            bar_time=_decode_ts(row["bar_time"], f"{where} bar_time"),
            timeframe=_decode_enum(Interval, row["timeframe"], f"{where} timeframe"),
            reasons=_load_string_list(row["reasons"], f"{where} reasons"),
        )
        score = QualityScore(float(row["quality"]), tuple(_decode_component(c, where) for c in components))
    except ValueError as exc:
        raise CorruptRecordError(f"{where} does not form a valid setup: {exc}") from exc
    if setup.signal_id != signal_id:
        raise CorruptRecordError(f"{where} content hashes to signal id {setup.signal_id}, not its stored id")
    return ScoredSetup(setup, score), _decode_enum(SignalStatus, row["status"], f"{where} status")


def _decode_rejection(row: sqlite3.Row) -> Rejection:
    where = f"rejection {row['id']}"
    detail = _load_json(row["detail"], f"{where} detail")
    if not isinstance(detail, dict) or not all(isinstance(v, str) for v in detail.values()):
        raise CorruptRecordError(f"{where} detail must be a JSON object of strings, was {row['detail']!r}")
    bar_time = row["bar_time"]
    return Rejection(
        kind=_decode_enum(RejectionKind, row["kind"], f"{where} kind"),
        symbol=row["symbol"],
        reason=row["reason"],
        strategy=row["strategy"],
        bar_time=None if bar_time is None else _decode_ts(bar_time, f"{where} bar_time"),
        detail=detail,
    )


def _decode_optional_ts(value: object, where: str) -> datetime | None:
    return None if value is None else _decode_ts(value, where)


def _decode_optional_decimal(value: object, where: str) -> Decimal | None:
    return None if value is None else _decode_decimal(value, where)


def _decode_optional_int(value: object, where: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise CorruptRecordError(f"{where} must be stored as an integer, was {value!r}")
    return value


def _decode_optional_text(value: object, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise CorruptRecordError(f"{where} must be stored as text, was {value!r}")
    return value


def _decode_signal_record(row: sqlite3.Row) -> SignalRecord:
    scored, status = _decode_signal(row)
    where = f"signal {row['signal_id']}"
    return SignalRecord(
        scored=scored,
        status=status,
        run_id=int(row["run_id"]),
        created_at=_decode_ts(row["created_at"], f"{where} created_at"),
        quantity=_decode_optional_decimal(row["quantity"], f"{where} quantity"),
        offered_at=_decode_optional_ts(row["offered_at"], f"{where} offered_at"),
        expires_at=_decode_optional_ts(row["expires_at"], f"{where} expires_at"),
        decided_by=_decode_optional_int(row["decided_by"], f"{where} decided_by"),
        decided_at=_decode_optional_ts(row["decided_at"], f"{where} decided_at"),
        reason=_decode_optional_text(row["reason"], f"{where} reason"),
        validation=_decode_validation(row["validation"], f"{where} validation"),
        sizing=_decode_sizing(row["sizing"], f"{where} sizing"),
    )


def _decode_sizing(value: object, where: str) -> SizingSummary | None:
    if value is None:
        return None
    data = _load_json(value, where)
    try:
        return SizingSummary.from_json(data)
    except (KeyError, TypeError, ValueError, ArithmeticError, AssertionError) as exc:
        raise CorruptRecordError(f"{where} is not a sizing snapshot: {exc}") from exc


def _decode_validation(value: object, where: str) -> PairValidation | None:
    if value is None:
        return None
    data = _load_json(value, where)
    try:
        return PairValidation.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecordError(f"{where} is not a validation snapshot: {exc}") from exc


def _decode_outbox_item(row: sqlite3.Row) -> OutboxItem:
    where = f"outbox item {row['id']}"
    payload = _load_json(row["payload"], f"{where} payload")
    if not isinstance(payload, dict):
        raise CorruptRecordError(f"{where} payload must be a JSON object, was {row['payload']!r}")
    return OutboxItem(
        item_id=int(row["id"]),
        kind=_decode_enum(OutboxKind, row["kind"], f"{where} kind"),
        chat_id=int(row["chat_id"]),
        payload=payload,
        created_at=_decode_ts(row["created_at"], f"{where} created_at"),
        attempts=int(row["attempts"]),
        next_attempt_at=_decode_optional_ts(row["next_attempt_at"], f"{where} next_attempt_at"),
        signal_id=_decode_optional_text(row["signal_id"], f"{where} signal_id"),
        last_error=_decode_optional_text(row["last_error"], f"{where} last_error"),
    )


def _decode_fill(row: sqlite3.Row) -> Fill:
    where = f"order {row['client_order_id']}"
    try:
        return Fill(
            client_order_id=row["client_order_id"],
            symbol=row["symbol"],
            side=_decode_enum(Side, row["side"], f"{where} side"),
            quantity=_decode_decimal(row["fill_quantity"], f"{where} fill_quantity"),
            price=_decode_decimal(row["fill_price"], f"{where} fill_price"),
            fees=_decode_decimal(row["fees"], f"{where} fees"),
            filled_at=_decode_ts(row["filled_at"], f"{where} filled_at"),
        )
    except ValueError as exc:
        raise CorruptRecordError(f"{where} does not form a valid fill: {exc}") from exc


def _decode_trade(row: sqlite3.Row) -> Trade:
    where = f"trade {row['trade_id']}"
    exit_reason = row["exit_reason"]
    latency = row["approval_latency_s"]
    if latency is not None and not isinstance(latency, int | float):
        raise CorruptRecordError(f"{where} approval_latency_s must be a number, was {latency!r}")
    try:
        return Trade(
            trade_id=row["trade_id"],
            signal_id=row["signal_id"],
            kind=_decode_enum(TradeKind, row["kind"], f"{where} kind"),
            strategy=row["strategy"],
            symbol=row["symbol"],
            side=_decode_enum(Side, row["side"], f"{where} side"),
            quantity=_decode_decimal(row["quantity"], f"{where} quantity"),
            contract_size=_decode_decimal(row["contract_size"], f"{where} contract_size"),
            entry_time=_decode_ts(row["entry_time"], f"{where} entry_time"),
            entry_price=_decode_decimal(row["entry_price"], f"{where} entry_price"),
            stop=_decode_decimal(row["stop"], f"{where} stop"),
            target=_decode_decimal(row["target"], f"{where} target"),
            entry_fees=_decode_decimal(row["entry_fees"], f"{where} entry_fees"),
            exit_time=_decode_optional_ts(row["exit_time"], f"{where} exit_time"),
            exit_price=_decode_optional_decimal(row["exit_price"], f"{where} exit_price"),
            exit_reason=None if exit_reason is None else _decode_enum(ExitReason, exit_reason, f"{where} exit_reason"),
            exit_fees=_decode_decimal(row["exit_fees"], f"{where} exit_fees"),
            approver_id=_decode_optional_int(row["approver_id"], f"{where} approver_id"),
            approval_latency_s=None if latency is None else float(latency),
        )
    except ValueError as exc:
        raise CorruptRecordError(f"{where} does not form a valid trade: {exc}") from exc


def _decode_control(row: sqlite3.Row) -> PairControl:
    where = f"pair control {row['id']}"
    return PairControl(
        strategy=row["strategy"],
        symbol=row["symbol"],
        state=PairState(row["state"]),
        source=ControlSource(row["source"]),
        reason=row["reason"],
        at=_decode_ts(row["at"], where),
        by=_decode_optional_int(row["by"], where),
        control_id=int(row["id"]),
    )


def _decode_model(row: sqlite3.Row) -> ModelVersion:
    where = f"learned model v{row['version']}"
    summary, model = _load_json(row["summary"], where), _load_json(row["model"], where)
    if not isinstance(summary, dict) or not isinstance(model, dict):
        raise CorruptRecordError(f"{where}: summary and model must be JSON objects")
    return ModelVersion(int(row["version"]), _decode_ts(row["created_at"], where), summary, model)


def _decode_shadow_order(row: sqlite3.Row) -> tuple[ShadowOrder, Fill | None]:
    """A shadow_orders row joined with its order's fill columns (NULL when the paper order did not fill)."""
    cid = row["client_order_id"]
    where = f"shadow order {cid}"
    method = row["method"]
    try:
        side = _decode_enum(Side, row["side"], f"{where} side")
        order = ShadowOrder(
            client_order_id=cid,
            broker=row["broker"],
            symbol=row["symbol"],
            side=side,
            quantity=_decode_decimal(row["quantity"], f"{where} quantity"),
            created_at=_decode_ts(row["created_at"], f"{where} created_at"),
            method=None if method is None else HTTPMethod(method),
            path=_decode_optional_text(row["path"], f"{where} path"),
            body_json=_decode_optional_text(row["body_json"], f"{where} body_json"),
            refusal=_decode_optional_text(row["refusal"], f"{where} refusal"),
        )
        fill = None
        if row["filled_at"] is not None:
            fill = Fill(
                client_order_id=cid,
                symbol=order.symbol,
                side=side,
                quantity=_decode_decimal(row["fill_quantity"], f"{where} fill_quantity"),
                price=_decode_decimal(row["fill_price"], f"{where} fill_price"),
                fees=_decode_decimal(row["fees"], f"{where} fees"),
                filled_at=_decode_ts(row["filled_at"], f"{where} filled_at"),
            )
    except ValueError as exc:
        raise CorruptRecordError(f"{where} does not form a valid record: {exc}") from exc
    return order, fill
