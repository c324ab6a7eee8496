"""Shadow mode: trade on paper and record the exact order the real broker would have received, sending nothing.

`ShadowBroker` wraps the paper broker. For every order it first builds the real broker's request with the
adapter's own pure builder (`bot.brokers.oanda.market_order`: the very code `OandaBroker.place_order` sends), stores
it in `shadow_orders` and logs it at INFO, then fills the order on paper. Nothing goes over the network: the
builder is pure and the shadow broker holds no HTTP client. The paper fill lands in `orders` under the same
client order id (the signal id), so each recorded request sits beside the fill it shadows.

A request the adapter cannot even build (a symbol OANDA has no name for, a size that is not whole units) is
recorded with the adapter's reason; the paper order still fills, since shadow mode trades paper.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Protocol

from bot.brokers.oanda import OandaRequest
from data.shadow_orders import ShadowOrder
from engine.domain import Instrument
from engine.ports import Broker, BrokerError, Clock
from engine.trading import BrokerExit, Fill, OrderRequest, OrderStatus, Quote, Trade

log = logging.getLogger(__name__)

WouldSend = Callable[[Instrument, OrderRequest], OandaRequest]


class ShadowOrderStore(Protocol):
    """Where shadow orders are kept (`data.sqlite.store.SqliteStore`)."""

    async def record_shadow_order(self, order: ShadowOrder) -> bool: ...


class ShadowBroker:
    """A Broker that fills on `paper` and records, never sends, the request `would_send` builds for each order."""

    def __init__(
        self, paper: Broker, would_send: WouldSend, store: ShadowOrderStore, clock: Clock, *, target: str
    ) -> None:
        if not target:
            raise ValueError("a shadow broker needs the name of the broker it shadows")
        self.paper = paper
        self.would_send = would_send
        self.store = store
        self.clock = clock
        self.target = target
        self.name = paper.name

    def __repr__(self) -> str:
        return f"ShadowBroker({self.paper.name}, shadowing {self.target})"

    async def quote(self, instrument: Instrument) -> Quote:
        return await self.paper.quote(instrument)

    async def close_trade(self, instrument: Instrument, trade: Trade) -> BrokerExit:
        """Close on paper: shadow positions are paper positions."""
        return await self.paper.close_trade(instrument, trade)

    async def move_stop(self, instrument: Instrument, trade: Trade, stop: Decimal) -> None:
        await self.paper.move_stop(instrument, trade, stop)

    async def place_order(self, instrument: Instrument, request: OrderRequest) -> Fill:
        """Record the request the shadowed broker would have received (first record stands), then fill on paper."""
        await self.record(instrument, request)
        return await self.paper.place_order(instrument, request)

    async def record(self, instrument: Instrument, request: OrderRequest) -> ShadowOrder:
        """Build, log and store the shadowed broker's request for `request` without sending it; return the record."""
        cid = request.client_order_id
        sent: OandaRequest | None = None
        refusal: str | None = None
        try:
            sent = self.would_send(instrument, request)
        except BrokerError as exc:
            refusal = str(exc)
            log.warning("shadow: %s could not take order %s (%s); filling it on paper only", self.target, cid, exc)
        else:
            log.info(
                "shadow: order %s NOT sent to %s: %s %s %s", cid, self.target, sent.method, sent.path, sent.content
            )
        order = ShadowOrder(
            client_order_id=cid,
            broker=self.target,
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            created_at=self.clock.now(),
            method=None if sent is None else sent.method,
            path=None if sent is None else sent.path,
            body_json=None if sent is None else sent.content,
            refusal=refusal,
        )
        if not await self.store.record_shadow_order(order):
            log.info("shadow: order %s was recorded before; the first record stands", cid)
        return order

    async def order_status(self, client_order_id: str) -> OrderStatus | None:
        return await self.paper.order_status(client_order_id)

    async def cancel(self, client_order_id: str) -> None:
        await self.paper.cancel(client_order_id)

    async def positions(self) -> list[Trade]:
        return await self.paper.positions()

    async def equity(self) -> Decimal:
        return await self.paper.equity()

    async def trade_exit(self, client_order_id: str) -> BrokerExit | None:
        return await self.paper.trade_exit(client_order_id)


def _fill_json(fill: Fill | None) -> dict[str, str] | None:
    if fill is None:
        return None
    return {
        "quantity": str(fill.quantity),
        "price": str(fill.price),
        "fees": str(fill.fees),
        "filled_at": fill.filled_at.isoformat().replace("+00:00", "Z"),
    }


def shadow_json(rows: Sequence[tuple[ShadowOrder, Fill | None]]) -> str:
    """Render shadow orders with their paper fills as JSON (prices as exact decimal strings, times UTC)."""
    items = [
        {
            "client_order_id": order.client_order_id,
            "broker": order.broker,
            "symbol": order.symbol,
            "side": order.side.value,
            "quantity": str(order.quantity),
            "created_at": order.created_at.isoformat().replace("+00:00", "Z"),
            "method": None if order.method is None else order.method.value,
            "path": order.path,
            "body": None if order.body_json is None else json.loads(order.body_json),
            "refusal": order.refusal,
            "paper_fill": _fill_json(fill),
        }
        for order, fill in rows
    ]
    return json.dumps(items, indent=2)


def shadow_text(rows: Sequence[tuple[ShadowOrder, Fill | None]]) -> str:
    """Render shadow orders, newest first, each with the exact request kept back and the paper fill beside it."""
    if not rows:
        return 'No shadow orders recorded. Shadow mode is [broker] kind = "oanda" with shadow = true.'
    lines = [f"{len(rows)} shadow order(s), newest first: recorded, never sent", ""]
    for order, fill in rows:
        lines.append(
            f"{order.created_at:%Y-%m-%d %H:%M:%SZ}  {order.symbol} {order.side.value} {order.quantity}"
            f"  signal {order.client_order_id}"
        )
        if order.refusal is not None:
            lines.append(f"  {order.broker} would refuse: {order.refusal}")
        else:
            lines.append(f"  would send to {order.broker}: {order.method} {order.path}")
            lines.append(f"  body: {order.body_json}")
        if fill is None:
            lines.append("  paper fill: none")
        else:
            lines.append(
                f"  paper fill: {fill.quantity} @ {fill.price} (fees {fill.fees})"
                f" at {fill.filled_at:%Y-%m-%d %H:%M:%SZ}"
            )
        lines.append("")
    return "\n".join(lines).rstrip("\n")
