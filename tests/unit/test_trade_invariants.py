"""A trade's own invariants: its exit is all or nothing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.domain import Side
from engine.trading import ExitReason, Trade, TradeKind

START = datetime(2025, 3, 3, 10, tzinfo=UTC)
CLOSED = Trade(
    trade_id="t0000",
    signal_id="t0000",
    kind=TradeKind.PAPER,
    strategy="trend_pullback",
    symbol="EURUSD",
    side=Side.LONG,
    quantity=Decimal(1),
    contract_size=Decimal(100),
    entry_time=START,
    entry_price=Decimal(100),
    stop=Decimal(99),
    target=Decimal(102),
    exit_time=START,
    exit_price=Decimal("100.05"),
    exit_reason=ExitReason.TARGET,
)


@pytest.mark.parametrize(
    ("start", "exit_fields"),
    [
        ("open", {"exit_time": START}),
        ("open", {"exit_price": Decimal(101)}),
        ("open", {"exit_reason": ExitReason.MANUAL}),
        ("closed", {"exit_time": None}),
        ("closed", {"exit_price": None, "exit_reason": None}),
    ],
)
def test_a_trade_sets_its_exit_time_price_and_reason_together(start: str, exit_fields: dict[str, object]) -> None:
    closed = CLOSED
    opened = dataclasses.replace(closed, exit_time=None, exit_price=None, exit_reason=None)
    assert opened.is_open and not closed.is_open
    with pytest.raises(ValueError, match="t0000: exit time, price and reason are set together"):
        dataclasses.replace(opened if start == "open" else closed, **exit_fields)  # type: ignore[arg-type]
