"""Hedged option spreads as multi-leg orders: hedge first, then the main leg; exits the other way round.

Rules (spec `nifty-weekly-zones.md` §7 and issue 17):

* Entry buys every child order of the hedge, then sells every child of the main leg. A leg's children go out
  one after another; each is idempotent by its tag, so running `open` again after a crash (or a TRANSIENT
  error, whose outcome is unknown) finds what already filled and sends only what is missing.
* If the main leg fails (the venue refuses it) or fills less than the hedge, the excess hedge is sold back
  (`r` tags) and, when nothing of the main leg filled, the spread is reported ROLLED_BACK with the venue's
  words: no naked hedge is left, and no short is ever sent before its hedge filled.
* Exit buys back the main leg first, then sells the hedge, in the quantities that are open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from engine.options import LegAction, LegFill, LegOrder, LegRole, SpreadPlan
from engine.ports import BrokerError, BrokerErrorKind, LegVenue

log = logging.getLogger(__name__)


class SpreadState(StrEnum):
    OPEN = "open"  # both legs filled in equal quantity
    ROLLED_BACK = "rolled_back"  # the main leg failed; the hedge was sold back
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SpreadResult:
    """Where a spread stands after an entry or exit, with every child fill and, on a rollback, why."""

    state: SpreadState
    fills: tuple[LegFill, ...]
    reason: str | None = None

    def quantity(self, symbol: str, buy: bool) -> int:
        return sum(f.quantity for f in self.fills if f.tradingsymbol == symbol and f.buy == buy)

    def average(self, symbol: str, buy: bool) -> Decimal | None:
        legs = [f for f in self.fills if f.tradingsymbol == symbol and f.buy == buy and f.quantity]
        units = sum(f.quantity for f in legs)
        return sum((f.price * f.quantity for f in legs), Decimal(0)) / units if units else None

    @property
    def modelled(self) -> bool:
        return any(f.modelled for f in self.fills)


class SpreadExecutor:
    """Places and closes spreads on one venue, in the spec's order, safely repeatable."""

    def __init__(self, venue: LegVenue) -> None:
        self.venue = venue

    async def open(self, plan: SpreadPlan) -> SpreadResult:
        """Buy the hedge, then sell the main leg; roll the hedge back if the main leg fails."""
        fills: list[LegFill] = []
        hedge_filled = await self._leg(plan.orders(LegRole.HEDGE, LegAction.OPEN), fills)
        if isinstance(hedge_filled, BrokerError) or hedge_filled == 0:
            failure = hedge_filled if isinstance(hedge_filled, BrokerError) else None
            await self._rollback(plan, fills, LegRole.HEDGE, self._sum(fills, plan.hedge_symbol))
            why = str(failure) if failure else "the hedge did not fill"
            return SpreadResult(SpreadState.ROLLED_BACK, tuple(fills), f"hedge {plan.hedge_symbol}: {why}")
        main = await self._leg(plan.orders(LegRole.MAIN, LegAction.OPEN, hedge_filled), fills)
        main_filled = self._sum([f for f in fills if not f.buy], plan.main_symbol)
        if main_filled < hedge_filled:
            await self._rollback(plan, fills, LegRole.HEDGE, hedge_filled - main_filled)
        if main_filled == 0:
            why = str(main) if isinstance(main, BrokerError) else "the main leg did not fill"
            log.warning("spread %s rolled back: %s", plan.signal_id, why)
            return SpreadResult(SpreadState.ROLLED_BACK, tuple(fills), f"main leg {plan.main_symbol}: {why}")
        return SpreadResult(SpreadState.OPEN, tuple(fills))

    async def close(self, plan: SpreadPlan, quantity: int) -> SpreadResult:
        """Buy back `quantity` of the main leg, then sell as much of the hedge."""
        fills: list[LegFill] = []
        main = await self._leg(plan.orders(LegRole.MAIN, LegAction.CLOSE, quantity), fills)
        if isinstance(main, BrokerError):
            raise main  # the short is still open: the hedge stays until it is closed
        hedge = await self._leg(plan.orders(LegRole.HEDGE, LegAction.CLOSE, quantity), fills)
        if isinstance(hedge, BrokerError):
            raise hedge
        return SpreadResult(SpreadState.CLOSED, tuple(fills))

    async def _leg(self, orders: tuple[LegOrder, ...], fills: list[LegFill]) -> int | BrokerError:
        """Fill each child in turn; the units filled, or the refusal that stopped the leg (TRANSIENT raises)."""
        filled = 0
        for order in orders:
            try:
                fill = await self.venue.leg_fill(order)
            except BrokerError as exc:
                if exc.kind in (BrokerErrorKind.TRANSIENT, BrokerErrorKind.PENDING, BrokerErrorKind.SESSION):
                    raise  # unknown or not now: `open` / `close` is run again and finds what filled by tag
                return exc
            fills.append(fill)
            filled += fill.quantity
            if fill.quantity < order.quantity:
                break  # a partial child: the rest of the leg is not sent
        return filled

    async def _rollback(self, plan: SpreadPlan, fills: list[LegFill], role: LegRole, quantity: int) -> None:
        if quantity <= 0:
            return
        for order in plan.orders(role, LegAction.ROLLBACK, quantity):
            fills.append(await self.venue.leg_fill(order))  # any failure here raises: the owner must be told

    @staticmethod
    def _sum(fills: list[LegFill], symbol: str) -> int:
        return sum(f.quantity for f in fills if f.tradingsymbol == symbol)
