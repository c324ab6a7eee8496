"""A broker fake at the port: the real paper broker, but with the quote pinned by the test."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

from bot.brokers.paper import PaperBroker, paper_close
from engine.domain import Instrument
from engine.ports import BrokerError, BrokerErrorKind
from engine.trading import BrokerExit, Fill, OrderRequest, OrderStatus, Quote, Trade


class PinnedQuoteBroker:
    """Delegates to a PaperBroker, except that quotes (and so fills) use prices the test sets."""

    name = "pinned"

    def __init__(self, paper: PaperBroker) -> None:
        self.paper = paper
        self.prices: dict[str, Decimal] = {}
        self.fail_with: str | None = None
        self.fill_at: Decimal | None = None  # the market moved between the quote and the fill
        self.orders: list[OrderRequest] = []
        self.status_error: str | None = None  # order lookups fail with this (a broker that cannot answer)
        self.quote_gate: asyncio.Event | None = None  # set: quotes wait for it (a slow price source)
        self.order_gate: asyncio.Event | None = None  # set: orders wait for it after being counted (a hung request)
        self.quotes_waiting = 0
        self.closes: list[str] = []  # trade ids, in the order their close reached the broker
        self.stop_moves: list[tuple[str, Decimal]] = []

    async def quote(self, instrument: Instrument) -> Quote:
        if self.quote_gate is not None:
            self.quotes_waiting += 1
            await self.quote_gate.wait()
        real = await self.paper.quote(instrument)
        price = self.prices.get(instrument.symbol)
        if price is None:
            return real
        return Quote(instrument.symbol, price, price, real.at)

    async def place_order(self, instrument: Instrument, request: OrderRequest) -> Fill:
        self.orders.append(request)
        if self.order_gate is not None:
            await self.order_gate.wait()
        if self.fail_with is not None:
            raise BrokerError(self.fail_with)
        fill = await self.paper.place_order(instrument, request)
        return fill if self.fill_at is None else replace(fill, price=self.fill_at)

    async def order_status(self, client_order_id: str) -> OrderStatus | None:
        if self.status_error is not None:
            raise BrokerError(self.status_error, BrokerErrorKind.TRANSIENT)
        return await self.paper.order_status(client_order_id)

    async def cancel(self, client_order_id: str) -> None:
        await self.paper.cancel(client_order_id)

    async def positions(self) -> list[Trade]:
        return await self.paper.positions()

    async def equity(self) -> Decimal:
        return await self.paper.equity()

    async def trade_exit(self, client_order_id: str) -> BrokerExit | None:
        return await self.paper.trade_exit(client_order_id)

    async def close_trade(self, instrument: Instrument, trade: Trade) -> BrokerExit:
        self.closes.append(trade.trade_id)
        if self.order_gate is not None:
            await self.order_gate.wait()
        if self.fail_with is not None:
            raise BrokerError(self.fail_with)
        return paper_close(await self.quote(instrument), instrument, trade, self.paper.costs, self.paper.clock.now())

    async def move_stop(self, instrument: Instrument, trade: Trade, stop: Decimal) -> None:
        self.stop_moves.append((trade.trade_id, stop))
