"""Command arguments as the trader types them: strict, ASCII, bounded, and every refusal says what is wrong.

`Decimal()` alone is far too lenient for money typed into a chat: it takes `1e1000000`, `NaN`, `Infinity` and
digits of any script (`١٢٣`). Here a P&L is a plain ASCII decimal of at most 12 whole and 8 fractional digits.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

from bot.services.outcomes import ReportArgs, ReportedOutcome

SIGNAL_ID: Final = re.compile(r"[0-9a-f]{10}")
PLAIN_DECIMAL: Final = re.compile(r"[+-]?[0-9]{1,12}(?:\.[0-9]{1,8})?")


def parse_money(text: str, what: str = "P&L") -> Decimal | str:
    """A plain ASCII decimal such as `125.50` or `-80`, or why `text` is not one."""
    if not PLAIN_DECIMAL.fullmatch(text):
        shown = text if len(text) <= 24 else f"{text[:21]}..."
        return f"{what} must be a plain number such as 125.50 or -80 (got {shown!r})"
    return Decimal(text)


def parse_report(args: list[str]) -> ReportArgs | str:
    """The arguments of an outside trade's report, or why they are not valid (outcome and sign must agree)."""
    if len(args) != 3:
        return "it takes three arguments"
    signal_id, word, amount = args[0].lower(), args[1].lower(), args[2]
    if not SIGNAL_ID.fullmatch(signal_id):
        return f"{args[0]!r} is not a signal id (10 hex digits, shown on each signal)"
    try:
        outcome = ReportedOutcome(word)
    except ValueError:
        return f"the outcome is win, loss or breakeven, not {args[1]!r}"
    pnl = parse_money(amount)
    if isinstance(pnl, str):
        return pnl
    if outcome is ReportedOutcome.WIN and pnl <= 0:
        return f"a win has a positive P&L, not {pnl}"
    if outcome is ReportedOutcome.LOSS and pnl >= 0:
        return f"a loss has a negative P&L, not {pnl}"
    return ReportArgs(signal_id, outcome, pnl)
