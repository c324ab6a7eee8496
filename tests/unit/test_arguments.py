"""Command arguments: a P&L is a plain ASCII decimal, bounded; the outcome and the sign agree."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.services.outcomes import ReportArgs, ReportedOutcome, breakeven_refusal
from bot.telegram.arguments import parse_money, parse_report

SIGNAL = "3f2a9c1b7d"


@pytest.mark.parametrize("text", ["125.50", "-80", "+3", "0", "999999999999.12345678"])
def test_plain_decimals_are_money(text: str) -> None:
    assert parse_money(text) == Decimal(text)


@pytest.mark.parametrize(
    "text",
    [
        "1e1000000",
        "1E3",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "١٢٣",
        "１２３",
        "12,50",
        "1_000",
        " 12",
        "12.",
        ".5",
        "1234567890123",
        "1.123456789",
        "",
        "0x10",
    ],
)
def test_anything_else_is_refused_saying_what_a_number_looks_like(text: str) -> None:
    refusal = parse_money(text)
    assert isinstance(refusal, str) and refusal.startswith("P&L must be a plain number such as 125.50 or -80 (got ")


def test_a_report_parses_into_its_parts_and_the_outcome_must_agree_with_the_sign() -> None:
    assert parse_report([SIGNAL.upper(), "WIN", "120.50"]) == ReportArgs(SIGNAL, ReportedOutcome.WIN, Decimal("120.50"))
    assert parse_report([SIGNAL, "loss", "-40"]) == ReportArgs(SIGNAL, ReportedOutcome.LOSS, Decimal("-40"))
    assert parse_report([SIGNAL, "win", "-5"]) == "a win has a positive P&L, not -5"
    assert parse_report([SIGNAL, "loss", "0"]) == "a loss has a negative P&L, not 0"
    assert parse_report([SIGNAL, "draw", "5"]) == "the outcome is win, loss or breakeven, not 'draw'"
    assert parse_report(["abc", "win", "5"]) == "'abc' is not a signal id (10 hex digits, shown on each signal)"
    assert parse_report([SIGNAL, "win"]) == "it takes three arguments"


def test_a_breakeven_is_within_a_tenth_of_the_risk_of_zero() -> None:
    assert breakeven_refusal(Decimal("-8.50"), Decimal("100")) is None
    assert breakeven_refusal(Decimal("10.00"), Decimal("100")) is None
    assert (
        breakeven_refusal(Decimal("5000"), Decimal("100"))
        == "a breakeven is within ±10.00 (0.1R) of zero; 5000 is a win"
    )
    assert (
        breakeven_refusal(Decimal("-11"), Decimal("100"))
        == "a breakeven is within ±10.00 (0.1R) of zero; -11 is a loss"
    )
