"""The daily summary message: the local day's trades, P&L and win rate, open positions, drift, protections."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from bot.services.drift_watch import DriftRow
from engine.controls import PairControl
from engine.ports import SignalRecord
from engine.trading import Trade

SUMMARY_KEY = "summary.last_date"  # the local date of the last summary sent (bot_state)
TOP_REASONS = 4


def summary_day(now: datetime, at: time, timezone: str, last_sent: date | None) -> date | None:
    """The local date whose summary is due at `now` (its time `at` has passed and it was not sent), or None."""
    local = now.astimezone(ZoneInfo(timezone))
    if local.time() < at or last_sent == local.date():
        return None
    return local.date()


def day_start(day: date, timezone: str) -> datetime:
    """Local midnight of `day`, in UTC."""
    return datetime.combine(day, time(0), ZoneInfo(timezone)).astimezone(UTC)


@dataclass(frozen=True)
class DailySummary:
    """What the day held, in the account currency; built by the runtime from the store."""

    day: date
    timezone: str
    closed: Sequence[Trade]  # paper, live and reported trades closed since local midnight
    pnl: Decimal
    currency: str
    open_trades: Sequence[Trade]
    dropped: Sequence[SignalRecord]  # signals dropped since local midnight, each with its reason
    protections: Sequence[str]  # protections blocking entries now
    drift: Sequence[DriftRow]
    controls: Mapping[tuple[str, str], PairControl]


def realised(trades: Sequence[Trade], to_account: Callable[[Trade], Decimal]) -> Decimal:
    return sum((to_account(t) for t in trades), Decimal(0))
