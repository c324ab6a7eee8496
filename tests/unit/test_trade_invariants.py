"""A trade's own invariants: its exit is all or nothing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.trading import ExitReason
from tests.builders import gbpusd_trade

START = datetime(2025, 3, 3, 10, tzinfo=UTC)


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
    closed = gbpusd_trade(0, True, START)
    opened = dataclasses.replace(closed, exit_time=None, exit_price=None, exit_reason=None)
    assert opened.is_open and not closed.is_open
    with pytest.raises(ValueError, match="t0000-external: exit time, price and reason are set together"):
        dataclasses.replace(opened if start == "open" else closed, **exit_fields)  # type: ignore[arg-type]
