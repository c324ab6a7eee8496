"""The record of one hedged option spread from its offer to its outcome, and the moves its status may make.

A spread is decided on the underlying (entry, close-only stop and expiry on the index) and traded as two
option legs; its money is what the legs filled at. Points and R are measured on the index, exactly as the
backtest scores it; the P&L is the legs' (INR), and says "modelled" when any leg was priced by the model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from engine.domain import Side, ensure_utc
from engine.options import TAG_ROLE, LegAction, LegFill, LegRole, SpreadPlan
from engine.trading import ExitReason


class SpreadStatus(StrEnum):
    PENDING = "pending"  # offered, waiting for Approve / Reject
    APPROVED = "approved"  # approved: its legs are being (or must be) placed
    OPEN = "open"  # both legs filled
    CLOSING = "closing"  # its exit was found: the legs are being (or must be) closed
    CLOSED = "closed"
    ROLLED_BACK = "rolled_back"  # the main leg failed; the hedge was sold back
    REJECTED = "rejected"
    EXPIRED = "expired"  # no decision in time


SPREAD_MOVES: Final = {
    SpreadStatus.PENDING: frozenset({SpreadStatus.APPROVED, SpreadStatus.REJECTED, SpreadStatus.EXPIRED}),
    SpreadStatus.APPROVED: frozenset({SpreadStatus.OPEN, SpreadStatus.ROLLED_BACK}),
    SpreadStatus.OPEN: frozenset({SpreadStatus.CLOSING}),
    SpreadStatus.CLOSING: frozenset({SpreadStatus.CLOSED}),
}


def spread_id(system: str, symbol: str, signal_time: datetime, side: Side) -> str:
    """Short deterministic id: the same signal seen by two runs gets the same id (10 hex characters)."""
    key = f"spread|{system}|{symbol}|{signal_time.isoformat()}|{side}"
    return hashlib.blake2b(key.encode(), digest_size=5).hexdigest()


@dataclass(frozen=True)
class SpreadRecord:
    """One spread: the signal on the index, the contracts and lots, its status and, once closed, its outcome."""

    spread_id: str
    system: str
    symbol: str
    rule: str
    side: Side
    signal_time: datetime  # the trigger bar's close
    entry: Decimal  # index level at the trigger bar's close
    stop: Decimal  # index level; fires on an hourly close beyond it
    expiry: date
    plan: SpreadPlan
    status: SpreadStatus
    venue: str
    zones: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None  # the offer's deadline
    decided_by: int | None = None
    exit_time: datetime | None = None
    exit_level: Decimal | None = None  # index level of the exit bar's close
    exit_reason: ExitReason | None = None
    reason: str | None = None  # why it rolled back, expired or was refused
    fills: tuple[LegFill, ...] = ()

    def __post_init__(self) -> None:
        ensure_utc(self.signal_time, "signal_time")
        if self.plan.signal_id != self.spread_id:
            raise ValueError(f"spread {self.spread_id}: its legs are tagged {self.plan.signal_id}")
        sign = self.side.sign
        if sign * (self.entry - self.stop) <= 0:
            raise ValueError(
                f"stop must be {'below' if sign > 0 else 'above'} entry for a {self.side}, was {self.stop}"
            )
        if (self.exit_time is None) != (self.exit_reason is None) or (self.exit_time is None) != (
            self.exit_level is None
        ):
            raise ValueError(f"spread {self.spread_id}: an exit has a time, a level and a reason together")

    def moved(self, status: SpreadStatus, **changes: Any) -> SpreadRecord:
        """This record in `status` (a legal move only)."""
        if status not in SPREAD_MOVES.get(self.status, frozenset()):
            raise ValueError(f"spread {self.spread_id} cannot move from {self.status} to {status}")
        return replace(self, status=status, **changes)

    @property
    def points(self) -> Decimal | None:
        return None if self.exit_level is None else (self.exit_level - self.entry) * self.side.sign

    @property
    def r(self) -> Decimal | None:
        points = self.points
        return None if points is None else (points / abs(self.entry - self.stop)).quantize(Decimal("0.01"))

    def filled(self, role: LegRole, action: LegAction) -> int:
        """Units filled by the child orders of one leg and action (found by their tags)."""
        prefix = f"{self.spread_id}{TAG_ROLE[role]}{action.value}"
        return sum(f.quantity for f in self.fills if f.tag.startswith(prefix))

    @property
    def open_quantity(self) -> int:
        """Units of the main leg sold and not bought back (the hedge matches it)."""
        return self.filled(LegRole.MAIN, LegAction.OPEN) - self.filled(LegRole.MAIN, LegAction.CLOSE)

    @property
    def pnl(self) -> Decimal:
        """Money the legs made: premiums received on sells less premiums paid on buys (before charges)."""
        return sum((f.price * f.quantity * (-1 if f.buy else 1) for f in self.fills), Decimal(0))

    @property
    def modelled(self) -> bool:
        return any(f.modelled for f in self.fills)
