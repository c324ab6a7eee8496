"""The paper broker: fills market orders at once against the last closed bar, with honest costs.

Prices come from the same `BarProvider` the scans use: the quote is the close of the last bar CLOSED at
`clock.now()`, half the instrument's typical spread either side (`engine.costs.quote_from_price`). The quote
carries that bar's close time, not the clock's, so a caller can see how stale it is (a weekend, a halted
feed) and decide; the broker itself never pretends a price is fresher than it is.

Orders fill in full at `fill_price` (spread + slippage, rounded to the tick against the trader) and pay
`commission`. `place_order` is idempotent by `client_order_id` within this process (a second call returns
the first Fill); across restarts the store enforces it (`BotStore.submit_order`/`record_fill`).
Open positions live in the store, which is the source of truth: `positions()` returns nothing here.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from engine.bars import from_nanos
from engine.costs import CostModel, commission, fill_price, quote_from_price
from engine.domain import Instrument, to_decimal
from engine.ports import BarProvider, BrokerError, Clock, ProviderError
from engine.trading import BrokerExit, Fill, OrderRequest, OrderState, OrderStatus, Quote, Trade

log = logging.getLogger(__name__)


class PaperBroker:
    """A simulated venue over a bar provider: immediate fills at the last closed bar's price plus costs."""

    name = "paper"

    def __init__(
        self,
        provider: BarProvider,
        instruments: Mapping[str, Instrument],
        clock: Clock,
        costs: CostModel,
        equity: Decimal = Decimal(10000),
    ) -> None:
        self.provider = provider
        self.starting_equity = equity
        self.instruments = dict(instruments)
        self.clock = clock
        self.costs = costs
        self._fills: dict[str, tuple[OrderRequest, Fill]] = {}
        self._lock = asyncio.Lock()

    async def quote(self, instrument: Instrument) -> Quote:
        """Quote from the last bar closed now; `Quote.at` is that bar's close time."""
        now = self.clock.now()
        symbol = instrument.symbol
        try:
            frame = await asyncio.to_thread(self.provider.fetch, instrument, now, 1)
        except ProviderError as exc:
            raise BrokerError(f"no price for {symbol}: {exc}") from exc
        except Exception as exc:  # an adapter bug or a network library's own error: still the trader's answer
            log.exception("price source %s failed for %s", self.provider.name, symbol)
            raise BrokerError(f"no price for {symbol}: the price source failed ({type(exc).__name__})") from exc
        if len(frame) == 0:
            raise BrokerError(f"no price for {symbol}: no bar has closed by {now:%Y-%m-%d %H:%MZ}")
        close = float(frame["close"].to_numpy()[-1])
        if not math.isfinite(close) or close <= 0:
            raise BrokerError(f"no price for {symbol}: the last bar's close is {close}")
        opened = int(frame.index.as_unit("ns").asi8[-1])
        closed_at: datetime = from_nanos(opened + instrument.interval.nanos)
        return quote_from_price(instrument, to_decimal(close, f"{symbol} close"), closed_at)

    async def place_order(self, instrument: Instrument, request: OrderRequest) -> Fill:
        """Fill a market order in full now; placing the same client_order_id again returns the same Fill."""
        async with self._lock:  # one order at a time: a concurrent retry cannot fill twice
            known = self._fills.get(request.client_order_id)
            if known is not None:
                if known[0] != request:
                    raise BrokerError(
                        f"order {request.client_order_id} was already placed with different details "
                        f"({known[0].side.value} {known[0].quantity} {known[0].symbol})"
                    )
                return known[1]
            self._check(instrument, request)
            quote = await self.quote(instrument)
            price = fill_price(quote, request.side, self.costs, instrument)
            fees = commission(price, request.quantity, instrument, self.costs)
            fill = Fill(
                client_order_id=request.client_order_id,
                symbol=request.symbol,
                side=request.side,
                quantity=request.quantity,
                price=price,
                fees=fees,
                filled_at=self.clock.now(),
            )
            self._fills[request.client_order_id] = (request, fill)
            log.info(
                "paper fill %s: %s %s %s @ %s fees %s",
                fill.client_order_id,
                fill.side.value,
                fill.quantity,
                fill.symbol,
                fill.price,
                fill.fees,
            )
            return fill

    async def order_status(self, client_order_id: str) -> OrderStatus | None:
        """The fill of an order placed in this process, None when this process never placed it."""
        known = self._fills.get(client_order_id)
        if known is None:
            return None
        fill = known[1]
        return OrderStatus(
            client_order_id,
            OrderState.FILLED,
            filled_quantity=fill.quantity,
            average_price=fill.price,
            fees=fill.fees,
            filled_at=fill.filled_at,
            broker_order_id=f"paper-{client_order_id}",
        )

    async def cancel(self, client_order_id: str) -> None:
        """Refuse: paper market orders fill at once, so there is never anything left to cancel."""
        if client_order_id in self._fills:
            raise BrokerError(f"order {client_order_id} is already filled; close the position instead")
        raise BrokerError(f"no paper order {client_order_id} to cancel")

    async def positions(self) -> list[Trade]:
        """Return no positions: paper positions are the store's open PAPER trades (the source of truth)."""
        return []

    async def equity(self) -> Decimal:
        """The configured paper account equity (realised P&L is the store's to add)."""
        return self.starting_equity

    async def trade_exit(self, client_order_id: str) -> BrokerExit | None:
        """Return None: nothing closes at the paper venue; the position monitor closes paper trades from bars."""
        return None

    def _check(self, instrument: Instrument, request: OrderRequest) -> None:
        symbol = request.symbol
        if symbol != instrument.symbol:
            raise BrokerError(f"order {request.client_order_id} is for {symbol} but was sent as {instrument.symbol}")
        if symbol not in self.instruments:
            raise BrokerError(f"{symbol} is not an instrument the paper broker trades")
        if request.quantity % instrument.lot_size != Decimal(0):
            raise BrokerError(f"{request.quantity} {symbol} is not a whole number of lots of {instrument.lot_size}")
