"""One Broker over several: each instrument's orders go to the broker of its market (config `[broker]`).

FX and gold go to OANDA or paper, NSE cash and F&O to Kite or paper, everything else to paper. Calls that
name an instrument go to its broker; calls that name only a client order id ask each broker in turn (an id
is a signal id, unique across them): the first that knows it answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from engine.domain import Instrument
from engine.ports import Broker, BrokerError, BrokerErrorKind
from engine.routing import Market, market_of
from engine.trading import BrokerExit, Fill, OrderRequest, OrderStatus, Quote, Trade


class RoutingBroker:
    """Routes by market; `default` takes the markets without a route of their own."""

    name = "routed"

    def __init__(self, routes: Mapping[Market, Broker], default: Broker) -> None:
        self.routes = dict(routes)
        self.default = default

    def __repr__(self) -> str:
        routes = ", ".join(f"{m.value}: {b.name}" for m, b in sorted(self.routes.items()))
        return f"RoutingBroker({routes}; others: {self.default.name})"

    def broker_for(self, instrument: Instrument) -> Broker:
        return self.routes.get(market_of(instrument), self.default)

    def _all(self) -> list[Broker]:
        unique: list[Broker] = []
        for broker in (*self.routes.values(), self.default):
            if all(broker is not b for b in unique):
                unique.append(broker)
        return unique

    async def quote(self, instrument: Instrument) -> Quote:
        return await self.broker_for(instrument).quote(instrument)

    async def place_order(self, instrument: Instrument, request: OrderRequest) -> Fill:
        return await self.broker_for(instrument).place_order(instrument, request)

    async def order_status(self, client_order_id: str) -> OrderStatus | None:
        for broker in self._all():
            status = await broker.order_status(client_order_id)
            if status is not None:
                return status
        return None

    async def cancel(self, client_order_id: str) -> None:
        refusals = []
        for broker in self._all():
            try:
                await broker.cancel(client_order_id)
                return
            except BrokerError as exc:
                if exc.kind is not BrokerErrorKind.REJECTED:
                    raise
                refusals.append(f"{broker.name}: {exc}")
        raise BrokerError(f"no broker could cancel {client_order_id} ({'; '.join(refusals)})")

    async def positions(self) -> list[Trade]:
        return [t for broker in self._all() for t in await broker.positions()]

    async def equity(self) -> Decimal:
        return await self.default.equity()

    async def trade_exit(self, client_order_id: str) -> BrokerExit | None:
        for broker in self._all():
            try:
                ended = await broker.trade_exit(client_order_id)
            except BrokerError as exc:
                if exc.kind is BrokerErrorKind.REJECTED:
                    continue  # not this broker's trade
                raise
            if ended is not None:
                return ended
        return None

    async def close_trade(self, instrument: Instrument, trade: Trade) -> BrokerExit:
        return await self.broker_for(instrument).close_trade(instrument, trade)

    async def move_stop(self, instrument: Instrument, trade: Trade, stop: Decimal) -> None:
        await self.broker_for(instrument).move_stop(instrument, trade, stop)
