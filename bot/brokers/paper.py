"""The paper broker: fills market orders at once against the last closed bar, with honest costs.

Prices come from the same `BarProvider` the scans use, through the same bar validation: the quote is the close of
the last valid bar CLOSED at `clock.now()`, half the instrument's typical spread either side
(`engine.costs.quote_from_price`). A feed whose last bar is older than `stale_bars` bars of market time (a halted
feed) gives no quote, as it gives no analysis. The quote carries that bar's close time, not the clock's: the
broker never pretends a price is fresher than it is.

Orders fill in full at `fill_price` (spread + slippage, rounded to the tick against the trader) and pay
`commission`. `place_order` is idempotent by `client_order_id` within this process (a second call returns
the first Fill); across restarts the store enforces it (`BotStore.submit_order`/`record_fill`).
Open positions live in the store, which is the source of truth: `positions()` returns nothing here.

Two fill models (`FillModel`):

* QUOTE (default): at once, at the quote of the last closed bar.
* NEXT_OPEN: as the backtester enters, at the open of the first bar that opens at or after the order arrives,
  through the same cost path. That price exists only once the bar has opened, so `place_order` answers PENDING
  (a `BrokerError` of kind PENDING) and the order fills when `order_status` is asked after the bar has closed in
  the data (the desk asks every minute and before each run), with that bar's open time as its fill time. The
  backtester's entry rules apply: an order whose bar opens at or beyond its stop or target, or fills at or beyond
  its stop, is rejected (not entered), and so is one whose next bar opens more than `max_wait_bars` bars of
  market time after it (a data gap). A run and an auto-mode order at a bar's close then enter exactly where the
  backtester enters; an approval later fills later, at the open of the bar after the click.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final, NoReturn

import numpy as np

from data.market.validation import validate_bars
from engine.bars import from_nanos, to_nanos
from engine.calendars import SessionCalendar, get_calendar
from engine.costs import CostModel, commission, fill_price, quote_from_price
from engine.domain import Instrument, Side, to_decimal
from engine.ports import BarProvider, BrokerError, BrokerErrorKind, Clock, ProviderError
from engine.trade_book import fill_refusal, gap_refusal
from engine.trading import BrokerExit, ExitReason, Fill, OrderRequest, OrderState, OrderStatus, Quote, Trade

log = logging.getLogger(__name__)

NEXT_OPEN_LOOKBACK: Final = 500  # bars fetched to find the entry bar of a working order
QUOTE_BARS: Final = 100  # bars a quote is validated on (one bad bar in 100 is dropped, as in analysis)


class FillModel(StrEnum):
    QUOTE = "quote"  # at once, at the last closed bar's close
    NEXT_OPEN = "next_open"  # at the open of the first bar opening at or after the order, as the backtester


class PaperBroker:
    """A simulated venue over a bar provider: fills at the last closed bar's price (or the next open) plus costs."""

    name = "paper"

    def __init__(
        self,
        provider: BarProvider,
        instruments: Mapping[str, Instrument],
        clock: Clock,
        costs: CostModel,
        equity: Decimal = Decimal(10000),
        *,
        fill_model: FillModel = FillModel.QUOTE,
        calendars: Mapping[str, SessionCalendar] | None = None,
        max_wait_bars: int = 2,
        stale_bars: int = 3,
    ) -> None:
        self.provider = provider
        self.starting_equity = equity
        self.instruments = dict(instruments)
        self.clock = clock
        self.costs = costs
        self.fill_model = fill_model
        self.calendars = dict(calendars or {})
        self.max_wait_bars = max_wait_bars
        self.stale_bars = stale_bars  # a quote older than this many bars of market time is refused, as in analysis
        self._fills: dict[str, tuple[OrderRequest, Fill]] = {}
        self._working: dict[str, tuple[OrderRequest, datetime]] = {}  # NEXT_OPEN orders waiting for their bar
        self._refused: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def quote(self, instrument: Instrument) -> Quote:
        """Quote from the last bar closed now, after the same bar validation as analysis (bad bars dropped, a
        stale feed refused); `Quote.at` is that bar's close time. The fetch and the validation run in a thread:
        neither holds the event loop (a click's other work goes on meanwhile)."""
        return await asyncio.to_thread(self._quote_at, instrument, self.clock.now())

    def _quote_at(self, instrument: Instrument, now: datetime) -> Quote:
        symbol = instrument.symbol
        try:
            frame = self.provider.fetch(instrument, now, QUOTE_BARS)
        except ProviderError as exc:
            raise BrokerError(f"no price for {symbol}: {exc}") from exc
        except Exception as exc:  # an adapter bug or a network library's own error: still the trader's answer
            log.exception("price source %s failed for %s", self.provider.name, symbol)
            raise BrokerError(f"no price for {symbol}: the price source failed ({type(exc).__name__})") from exc
        if len(frame) == 0:
            raise BrokerError(f"no price for {symbol}: no bar has closed by {now:%Y-%m-%d %H:%MZ}")
        calendar = self.calendars.get(symbol) or get_calendar(instrument.calendar)
        check = validate_bars(frame, instrument, calendar, now, min_bars=1, stale_bars=self.stale_bars)
        if check.bars is None:
            raise BrokerError(f"no price for {symbol}: {check.rejection}")
        bars = check.bars
        closed_at: datetime = from_nanos(int(bars.close_time[-1]))
        return quote_from_price(instrument, to_decimal(float(bars.close[-1]), f"{symbol} close"), closed_at)

    async def place_order(self, instrument: Instrument, request: OrderRequest) -> Fill:
        """Fill a market order in full; placing the same client_order_id again returns the same Fill.

        NEXT_OPEN: accept it and raise PENDING until its bar is known (see the module docstring).
        """
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
            if self.fill_model is FillModel.NEXT_OPEN:
                self._working.setdefault(request.client_order_id, (request, self.clock.now()))
                fill = await self._fill_working(request.client_order_id)
                if fill is None:
                    raise BrokerError(
                        f"paper order {request.client_order_id} fills at the open of the next {request.symbol} bar",
                        BrokerErrorKind.PENDING,
                    )
                return fill
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
        """The fill of an order placed in this process (a working one fills once its bar is known), None when this
        process never placed it."""
        if client_order_id in self._working:
            async with self._lock:
                try:
                    await self._fill_working(client_order_id)
                except BrokerError as exc:
                    return OrderStatus(client_order_id, OrderState.REJECTED, reason=str(exc))
        refused = self._refused.get(client_order_id)
        if refused is not None:
            return OrderStatus(client_order_id, OrderState.REJECTED, reason=refused)
        if client_order_id in self._working:
            return OrderStatus(client_order_id, OrderState.PENDING)
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

    async def close_trade(self, instrument: Instrument, trade: Trade) -> BrokerExit:
        """Close at the validated quote now: a long sells at the bid, a short buys at the ask, slipped and charged
        as every paper fill."""
        return paper_close(await self.quote(instrument), instrument, trade, self.costs, self.clock.now())

    async def move_stop(self, instrument: Instrument, trade: Trade, stop: Decimal) -> None:
        """Nothing to do: the position monitor watches the stop the store holds."""

    async def _fill_working(self, client_order_id: str) -> Fill | None:
        """Fill a working order at the open of its bar once that bar has closed in the data (lock held)."""
        request, placed_at = self._working[client_order_id]
        instrument = self.instruments[request.symbol]
        now = self.clock.now()
        try:
            frame = await asyncio.to_thread(self.provider.fetch, instrument, now, NEXT_OPEN_LOOKBACK)
        except ProviderError as exc:
            log.warning("paper order %s waits: no %s bars (%s)", client_order_id, request.symbol, exc)
            return None
        opens = frame.index.as_unit("ns").asi8
        k = int(np.searchsorted(opens, to_nanos(placed_at), side="left"))
        if k >= len(frame):
            return None  # its bar has not closed yet
        opened_at = from_nanos(int(opens[k]))
        wait = self._market_time(instrument, placed_at, opened_at)
        if wait is not None and wait > instrument.interval.delta * self.max_wait_bars:
            self._refuse(client_order_id, f"no {request.symbol} bar opened within {self.max_wait_bars} bars")
        opened = to_decimal(float(frame["open"].to_numpy()[k]), f"{request.symbol} open")
        if request.stop is not None and request.target is not None:
            gapped = gap_refusal(request.side, request.stop, request.target, opened)
            if gapped is not None:
                self._refuse(client_order_id, f"{gapped} ({opened}): not entered")
        price = fill_price(quote_from_price(instrument, opened, opened_at), request.side, self.costs, instrument)
        if request.stop is not None and fill_refusal(request.side, request.stop, price) is not None:
            self._refuse(client_order_id, f"the fill {price} is at or beyond the stop {request.stop}")
        fill = Fill(
            client_order_id=client_order_id,
            symbol=request.symbol,
            side=request.side,
            quantity=request.quantity,
            price=price,
            fees=commission(price, request.quantity, instrument, self.costs),
            filled_at=opened_at,
        )
        del self._working[client_order_id]
        self._fills[client_order_id] = (request, fill)
        log.info(
            "paper fill %s at the %s open: %s %s @ %s",
            client_order_id,
            opened_at,
            fill.side.value,
            fill.quantity,
            price,
        )
        return fill

    def _refuse(self, client_order_id: str, reason: str) -> NoReturn:
        """Reject a working order for good, with the reason; raise it to the caller that placed it."""
        del self._working[client_order_id]
        self._refused[client_order_id] = reason
        raise BrokerError(f"paper order {client_order_id} rejected: {reason}")

    def _market_time(self, instrument: Instrument, since: datetime, until: datetime) -> timedelta | None:
        calendar = self.calendars.get(instrument.symbol)
        return None if calendar is None else calendar.open_duration(since, until)

    def _check(self, instrument: Instrument, request: OrderRequest) -> None:
        symbol = request.symbol
        if symbol != instrument.symbol:
            raise BrokerError(f"order {request.client_order_id} is for {symbol} but was sent as {instrument.symbol}")
        if symbol not in self.instruments:
            raise BrokerError(f"{symbol} is not an instrument the paper broker trades")
        if request.quantity % instrument.lot_size != Decimal(0):
            raise BrokerError(f"{request.quantity} {symbol} is not a whole number of lots of {instrument.lot_size}")


def paper_close(quote: Quote, instrument: Instrument, trade: Trade, costs: CostModel, at: datetime) -> BrokerExit:
    """The exit of closing `trade` at market on `quote`: the opposite side's fill price and its commission."""
    closing = Side.SHORT if trade.side is Side.LONG else Side.LONG
    price = fill_price(quote, closing, costs, instrument)
    fees = commission(price, trade.quantity, instrument, costs)
    return BrokerExit(trade.signal_id, price, at, ExitReason.MANUAL, trade.quantity, fees)
