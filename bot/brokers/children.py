"""Orders above an instrument's freeze quantity go out as child orders (NSE F&O style), each exactly once.

A signal's order of Q lots on an instrument with freeze quantity F is sent as orders of at most F lots
(`engine.sizing.split_children`, the remainder last) with client ids `{signal}` for the first child and
`{signal}.2`, `{signal}.3`... for the others. The children are derived from the order itself, so after a
crash the same ids are rebuilt; the broker underneath is idempotent by client id, so sending a child again
returns its first fill.

The signal's fill is the children's: quantities and fees added up, the price their quantity-weighted
average (exact, not rounded to the tick: it is an average), the time the last one filled. A child refused
after others filled leaves a partial fill of those (the trade records what was bought, the log says why
the rest is missing); a child that gets no answer (a transient error) stops the sending there and raises,
so the order stays unconfirmed. A split order is settled by sending it again: each child already at the
broker returns its fill, and only the children that never arrived are sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal

from engine.domain import Instrument
from engine.ports import Broker, BrokerError
from engine.sizing import split_children
from engine.trading import BrokerExit, ExitReason, Fill, OrderRequest, OrderStatus, Quote, Trade

log = logging.getLogger(__name__)

CHILD_SEPARATOR = "."


def child_ids(client_order_id: str, count: int) -> list[str]:
    """Client ids of an order's children: the order's own id first, then `{id}.2`, `{id}.3`..."""
    return [client_order_id] + [f"{client_order_id}{CHILD_SEPARATOR}{k}" for k in range(2, count + 1)]


def child_requests(request: OrderRequest, instrument: Instrument, freeze: Decimal | None) -> list[OrderRequest]:
    """The orders actually sent for `request`: itself, or its children of at most `freeze` lots each."""
    sizes = split_children(request.quantity, freeze, instrument.lot_size)
    if len(sizes) <= 1:
        return [request]
    ids = child_ids(request.client_order_id, len(sizes))
    return [replace(request, client_order_id=cid, quantity=size) for cid, size in zip(ids, sizes, strict=True)]


def combine_fills(request: OrderRequest, fills: Sequence[Fill]) -> Fill:
    """One fill for the parent order: summed quantity and fees, the quantity-weighted average price."""
    quantity = sum((f.quantity for f in fills), Decimal(0))
    value = sum((f.quantity * f.price for f in fills), Decimal(0))
    return Fill(
        client_order_id=request.client_order_id,
        symbol=request.symbol,
        side=request.side,
        quantity=quantity,
        price=value / quantity,
        fees=sum((f.fees for f in fills), Decimal(0)),
        filled_at=max(f.filled_at for f in fills),
    )


class ChildOrderBroker:
    """A broker that splits orders above each symbol's freeze quantity into child orders of the one underneath."""

    def __init__(self, inner: Broker, freeze: Mapping[str, Decimal]) -> None:
        self.inner = inner
        self.freeze = dict(freeze)
        self.name = inner.name

    async def quote(self, instrument: Instrument) -> Quote:
        return await self.inner.quote(instrument)

    async def place_order(self, instrument: Instrument, request: OrderRequest) -> Fill:
        """Send the order, or its children one after the other, and return the combined fill."""
        children = child_requests(request, instrument, self.freeze.get(instrument.symbol))
        if len(children) == 1:
            return await self.inner.place_order(instrument, request)
        fills: list[Fill] = []
        for child in children:
            try:
                fills.append(await self.inner.place_order(instrument, child))
            except BrokerError as exc:
                if exc.transient or not fills:
                    raise
                log.warning(
                    "order %s: child %s refused after %d of %d filled (%s); recording the filled part",
                    request.client_order_id,
                    child.client_order_id,
                    len(fills),
                    len(children),
                    exc,
                )
                break
        return combine_fills(request, fills)

    async def order_status(self, client_order_id: str) -> OrderStatus | None:
        """The status of one order or child by its own client id (a split order is settled by sending it again)."""
        return await self.inner.order_status(client_order_id)

    async def trade_exit(self, client_order_id: str) -> BrokerExit | None:
        """How the trade of this order ended at the broker (for a split order: its first child's trade)."""
        return await self.inner.trade_exit(client_order_id)

    async def close_trade(self, instrument: Instrument, trade: Trade) -> BrokerExit:
        """Close the trade, or each child's trade of a split order, and return the exit at their average price.

        A child whose close fails stops the closing there and raises: the trade stays open in the store, and the
        children already closed return their closes when it is closed again."""
        parts = self._parts(instrument, trade)
        if len(parts) == 1:
            return await self.inner.close_trade(instrument, trade)
        exits = [await self.inner.close_trade(instrument, part) for part in parts]
        quantity = sum((e.quantity for e in exits), Decimal(0))
        price = sum((e.price * e.quantity for e in exits), Decimal(0)) / quantity  # an average, as fills are
        return BrokerExit(
            trade.signal_id,
            price,
            max(e.closed_at for e in exits),
            ExitReason.MANUAL,
            quantity,
            sum((e.fees for e in exits), Decimal(0)),
            sum((e.financing for e in exits), Decimal(0)),
        )

    async def move_stop(self, instrument: Instrument, trade: Trade, stop: Decimal) -> None:
        """Move the stop of the trade, or of each child's trade of a split order."""
        for part in self._parts(instrument, trade):
            await self.inner.move_stop(instrument, part, stop)

    def _parts(self, instrument: Instrument, trade: Trade) -> list[Trade]:
        """The trade as the broker holds it: one per child order it was sent as."""
        freeze = self.freeze.get(instrument.symbol)
        sizes = split_children(trade.quantity, freeze, instrument.lot_size)
        if len(sizes) == 1:
            return [trade]
        ids = child_ids(trade.signal_id, len(sizes))
        return [replace(trade, signal_id=i, quantity=q) for i, q in zip(ids, sizes, strict=True)]

    async def cancel(self, client_order_id: str) -> None:
        await self.inner.cancel(client_order_id)

    async def positions(self) -> list[Trade]:
        return await self.inner.positions()

    async def equity(self) -> Decimal:
        return await self.inner.equity()
