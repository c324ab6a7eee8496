"""How values are written to and read from SQLite: exact decimals, UTC instants, JSON, records."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

from data.outbox import OutboxKind
from engine.domain import (
    SIGNAL_TRANSITIONS,
    Interval,
    Rejection,
    RejectionKind,
    RunStatus,
    ScoredSetup,
    Side,
    SignalStatus,
    ensure_utc,
)
from engine.trading import ExitReason, Fill, OrderRequest, Trade, TradeAction, TradeKind

_E = TypeVar(
    "_E", Side, Interval, SignalStatus, RunStatus, RejectionKind, TradeKind, ExitReason, OutboxKind, TradeAction
)

# Moves that carry data of their own: only the method that records that data may make them.
_MOVES_BY_METHOD: Final = {SignalStatus.ORDER_SUBMITTED: "submit_order", SignalStatus.FILLED: "record_fill"}

_OFFERED: Final = frozenset({SignalStatus.PENDING, SignalStatus.APPROVED})

_ORDER_TRADE_KINDS: Final = frozenset({TradeKind.PAPER, TradeKind.LIVE})

_TRADE_COLUMNS: Final = (
    "trade_id, signal_id, kind, strategy, symbol, side, quantity, contract_size, entry_time, entry_price, stop,"
    " target, entry_fees, exit_time, exit_price, exit_reason, exit_fees, approver_id, approval_latency_s"
)

_TRANSITION_SQL: Final = (
    "UPDATE signals SET status = ?, updated_at = ?, offered_at = COALESCE(?, offered_at),"
    " decided_at = COALESCE(decided_at, ?), decided_by = COALESCE(?, decided_by), reason = COALESCE(?, reason),"
    " quantity = COALESCE(?, quantity), expires_at = COALESCE(?, expires_at) WHERE signal_id = ? AND status = ?"
)

_SET_STATE_SQL: Final = (
    "INSERT INTO bot_state (key, value, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)

ACTIVE_MODEL_KEY: Final = "learning.active_version"

_IN_CHUNK: Final = 500  # ids per `IN (...)` query, well under SQLite's bound-parameter limit

_TIMESTAMP_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")


@dataclass(frozen=True, slots=True)
class _SignalRow:
    signal_id: str
    strategy: str
    symbol: str
    side: str
    timeframe: str
    bar_time: str
    entry: str
    stop: str
    targets: str
    reasons: str
    quality: float
    components: str


@dataclass(frozen=True, slots=True)
class _RejectionRow:
    kind: RejectionKind
    symbol: str
    strategy: str | None
    bar_time: str | None
    reason: str
    detail: str


def _ts_key(column: str) -> str:
    """SQL for a stored instant in fixed width (missing `.ffffff` padded), so text order is time order."""
    return f"(CASE WHEN length({column}) = 20 THEN substr({column}, 1, 19) || '.000000Z' ELSE {column} END)"


def _encode_ts_key(ts: datetime, name: str) -> str:
    """An instant in the fixed-width form `_ts_key` compares against."""
    text = _encode_ts(ts, name)
    return f"{text[:19]}.000000Z" if len(text) == 20 else text


def _check_text(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, was {value!r}")
    return value


def _optional_text(value: str | None, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, was {type(value).__name__}")
    return value


def _check_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, was {value!r}")
    return value


def _optional_int(value: int | None, name: str) -> int | None:
    return None if value is None else _check_int(value, name)


def _check_positive_int(value: int, name: str) -> int:
    if _check_int(value, name) < 1:
        raise ValueError(f"{name} must be a positive integer, was {value!r}")
    return value


def _enum_arg(enum: type[_E], value: object, name: str) -> _E:
    if not isinstance(value, str):  # every enum here is a StrEnum: members are strings too
        raise TypeError(f"{name} must be a {enum.__name__}, was {value!r}")
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(member.value for member in enum)
        raise ValueError(f"{name} must be one of {known}, was {value!r}") from None


def _encode_amount(value: Decimal, name: str, *, positive: bool) -> str:
    """A finite Decimal that is > 0 (`positive`) or >= 0, as text."""
    text = _encode_decimal(value, name)
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, was {value}")
    return text


def _check_transition(expected: SignalStatus, to: SignalStatus) -> tuple[SignalStatus, SignalStatus]:
    expected, to = _enum_arg(SignalStatus, expected, "expected"), _enum_arg(SignalStatus, to, "to")
    allowed = SIGNAL_TRANSITIONS[expected]
    if to not in allowed:
        options = ", ".join(sorted(allowed)) or "nothing (it is final)"
        raise ValueError(f"illegal signal transition {expected} -> {to}: from {expected} a signal may go to {options}")
    if to in _MOVES_BY_METHOD:
        raise ValueError(f"signal transition {expected} -> {to} is made by {_MOVES_BY_METHOD[to]}(), not transition()")
    return expected, to


def _encode_payload(payload: dict[str, Any]) -> str:
    """JSON text of a payload that reads back equal (str keys; str, int, float, bool, None, lists, dicts)."""
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, was {type(payload).__name__}")
    try:
        text = _json(payload)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"payload cannot be stored as JSON: {exc}") from exc
    if json.loads(text) != payload:  # tuples, non-str keys...
        raise ValueError(f"payload does not read back unchanged from JSON (use lists and str keys): {payload!r}")
    return text


def _encode_order(signal_id: str, request: OrderRequest, at: datetime) -> tuple[str, str, str, str, str]:
    _check_text(signal_id, "signal_id")
    if not isinstance(request, OrderRequest):
        raise TypeError(f"request must be an OrderRequest, was {type(request).__name__}")
    if request.client_order_id != signal_id:
        raise ValueError(f"order client_order_id {request.client_order_id!r} must be the signal id {signal_id!r}")
    quantity = _encode_amount(request.quantity, f"order {signal_id} quantity", positive=True)
    return (signal_id, request.symbol, Side(request.side).value, quantity, _encode_ts(at, "at"))


def _encode_fill(fill: Fill) -> tuple[str, str, str, str]:
    """(price, quantity, fees, filled_at) of a fill, validated."""
    if not isinstance(fill, Fill):
        raise TypeError(f"fill must be a Fill, was {type(fill).__name__}")
    where = f"fill {fill.client_order_id}"
    return (
        _encode_amount(fill.price, f"{where} price", positive=True),
        _encode_amount(fill.quantity, f"{where} quantity", positive=True),
        _encode_amount(fill.fees, f"{where} fees", positive=False),
        _encode_ts(fill.filled_at, f"{where} filled_at"),
    )


def _check_fill_opens(fill: Fill, trade: Trade) -> None:
    """The trade must be the open PAPER/LIVE position the fill created."""
    if trade.kind not in _ORDER_TRADE_KINDS or not trade.is_open:
        raise ValueError(f"a fill opens an open paper or live trade, not a {trade.kind} trade (open: {trade.is_open})")
    mine = (fill.client_order_id, fill.symbol, Side(fill.side), fill.quantity)
    theirs = (trade.signal_id, trade.symbol, Side(trade.side), trade.quantity)
    if mine != theirs:
        raise ValueError(f"trade {trade.trade_id} {theirs} does not match fill {mine} (signal, symbol, side, quantity)")


def _encode_trade(trade: Trade) -> tuple[Any, ...]:
    """Column values of a trade in `_TRADE_COLUMNS` order, validated."""
    if not isinstance(trade, Trade):
        raise TypeError(f"trade must be a Trade, was {type(trade).__name__}")
    where = f"trade {trade.trade_id!r}"
    latency = trade.approval_latency_s
    if latency is not None and (
        isinstance(latency, bool) or not isinstance(latency, int | float) or not 0 <= latency < float("inf")
    ):
        raise ValueError(f"{where} approval_latency_s must be a finite non-negative number, was {latency!r}")
    exit_time, exit_price, exit_reason = trade.exit_time, trade.exit_price, trade.exit_reason
    return (
        _check_text(trade.trade_id, "trade_id"),
        _check_text(trade.signal_id, f"{where} signal_id"),
        _enum_arg(TradeKind, trade.kind, f"{where} kind").value,
        _check_text(trade.strategy, f"{where} strategy"),
        _check_text(trade.symbol, f"{where} symbol"),
        _enum_arg(Side, trade.side, f"{where} side").value,
        _encode_amount(trade.quantity, f"{where} quantity", positive=True),
        _encode_amount(trade.contract_size, f"{where} contract_size", positive=True),
        _encode_ts(trade.entry_time, f"{where} entry_time"),
        _encode_amount(trade.entry_price, f"{where} entry_price", positive=True),
        _encode_amount(trade.stop, f"{where} stop", positive=True),
        _encode_amount(trade.target, f"{where} target", positive=True),
        _encode_amount(trade.entry_fees, f"{where} entry_fees", positive=False),
        None if exit_time is None else _encode_ts(exit_time, f"{where} exit_time"),
        None if exit_price is None else _encode_amount(exit_price, f"{where} exit_price", positive=True),
        None if exit_reason is None else _enum_arg(ExitReason, exit_reason, f"{where} exit_reason").value,
        _encode_amount(trade.exit_fees, f"{where} exit_fees", positive=False),
        _optional_int(trade.approver_id, f"{where} approver_id"),
        None if latency is None else float(latency),
    )


def _kinds_filter(kinds: Collection[TradeKind] | None) -> tuple[str, list[Any]]:
    """SQL (` AND kind IN (...)`, or nothing for None) and its parameters."""
    if kinds is None:
        return "", []
    if isinstance(kinds, str) or not isinstance(kinds, Collection):
        raise TypeError(f"kinds must be a collection of TradeKind or None, was {kinds!r}")
    values = sorted({_enum_arg(TradeKind, kind, "kinds item").value for kind in kinds})
    return f" AND kind IN ({', '.join('?' * len(values))})", list(values)


def _transition_params(
    signal_id: str,
    expected: SignalStatus,
    to: SignalStatus,
    at: datetime,
    by: int | None,
    reason: str | None,
    quantity: Decimal | None,
    expires_at: datetime | None,
) -> tuple[Any, ...]:
    """Parameters of `_TRANSITION_SQL` for one checked move."""
    _check_text(signal_id, "signal_id")
    at_text = _encode_ts(at, "at")
    return (
        to.value,
        at_text,
        at_text if expected is SignalStatus.NEW and to in _OFFERED else None,
        None if to is SignalStatus.PENDING else at_text,
        _optional_int(by, "by"),
        _optional_text(reason, "reason"),
        None if quantity is None else _encode_amount(quantity, "quantity", positive=True),
        None if expires_at is None else _encode_ts(expires_at, "expires_at"),
        signal_id,
        expected.value,
    )


def _check_run_id(run_id: int) -> None:
    if isinstance(run_id, bool) or not isinstance(run_id, int) or run_id < 1:
        raise ValueError(f"run_id must be a positive integer, was {run_id!r}")


def _sequence(items: Sequence[Any], name: str) -> Sequence[Any]:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise TypeError(f"{name} must be a sequence (list or tuple), was {type(items).__name__}")
    return items


def _string_list(items: Sequence[str], name: str, *, allow_empty_items: bool = False) -> list[str]:
    values = list(_sequence(items, name))
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{name}[{i}] must be a string, was {type(value).__name__}")
        if not allow_empty_items and not value.strip():
            raise ValueError(f"{name}[{i}] must not be empty")
    return values


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _encode_ts(ts: datetime, name: str) -> str:
    """Format a UTC datetime as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`."""
    if not isinstance(ts, datetime):
        raise TypeError(f"{name} must be a datetime, was {type(ts).__name__}")
    naive = ensure_utc(ts, name).astimezone(UTC).replace(tzinfo=None)
    return naive.isoformat(timespec="microseconds" if naive.microsecond else "seconds") + "Z"


def _encode_decimal(value: Decimal, name: str) -> str:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{name} must be a finite Decimal, was {value!r}")
    return str(value)


def _encode_setups(setups: Sequence[ScoredSetup]) -> list[_SignalRow]:
    rows: list[_SignalRow] = []
    first_index: dict[str, int] = {}
    for i, item in enumerate(_sequence(setups, "setups")):
        row = _encode_setup(item, i)
        if row.signal_id in first_index:
            raise ValueError(
                f"setups[{i}] ({row.symbol} {row.strategy} {row.side} at {row.bar_time}) has the same signal id "
                f"{row.signal_id} as setups[{first_index[row.signal_id]}]; a run must report each setup once"
            )
        first_index[row.signal_id] = i
        rows.append(row)
    return rows


def _encode_setup(item: ScoredSetup, i: int) -> _SignalRow:
    if not isinstance(item, ScoredSetup):
        raise TypeError(f"setups[{i}] must be a ScoredSetup, was {type(item).__name__}")
    setup, score = item.setup, item.score
    where = f"setups[{i}] ({setup.symbol} {setup.strategy})"
    components = []
    for c in score.components:
        for field_name in ("value", "weight"):
            number = getattr(c, field_name)
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise TypeError(f"{where} component {c.name} {field_name} must be a number, was {number!r}")
        components.append({"name": c.name, "value": float(c.value), "weight": float(c.weight), "reason": c.reason})
    return _SignalRow(
        signal_id=setup.signal_id,
        strategy=setup.strategy,
        symbol=setup.symbol,
        side=Side(setup.side).value,
        timeframe=Interval(setup.timeframe).value,
        bar_time=_encode_ts(setup.bar_time, f"{where} bar_time"),
        entry=_encode_decimal(setup.entry, f"{where} entry"),
        stop=_encode_decimal(setup.stop, f"{where} stop"),
        targets=_json([_encode_decimal(t, f"{where} target") for t in setup.targets]),
        reasons=_json(_string_list(setup.reasons, f"{where} reasons", allow_empty_items=True)),
        quality=float(score.total),
        components=_json(components),
    )


def _encode_rejection(item: Rejection, i: int) -> _RejectionRow:
    if not isinstance(item, Rejection):
        raise TypeError(f"rejections[{i}] must be a Rejection, was {type(item).__name__}")
    where = f"rejections[{i}]"
    try:
        kind = RejectionKind(item.kind)
    except ValueError:
        known = ", ".join(k.value for k in RejectionKind)
        raise ValueError(f"{where} ({item.symbol}) has unknown kind {item.kind!r}; expected one of {known}") from None
    if not isinstance(item.symbol, str) or not item.symbol.strip():
        raise ValueError(f"{where} symbol must be a non-empty string, was {item.symbol!r}")
    if not isinstance(item.reason, str) or not item.reason.strip():
        raise ValueError(f"{where} ({item.symbol}) reason must be a non-empty string, was {item.reason!r}")
    if item.strategy is not None and not isinstance(item.strategy, str):
        raise TypeError(f"{where} ({item.symbol}) strategy must be a string or None, was {item.strategy!r}")
    if not isinstance(item.detail, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in item.detail.items()
    ):
        raise TypeError(f"{where} ({item.symbol}) detail must map strings to strings, was {item.detail!r}")
    return _RejectionRow(
        kind=kind,
        symbol=item.symbol,
        strategy=item.strategy,
        bar_time=None if item.bar_time is None else _encode_ts(item.bar_time, f"{where} bar_time"),
        reason=item.reason,
        detail=_json(dict(item.detail)),
    )
