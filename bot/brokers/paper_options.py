"""Option legs filled on paper, for spreads no broker trades: at the real contract's quote when a Kite
session gives one, else at a MODELLED price.

With a quote source (Kite, `[weekly_zones] paper = true` beside `nse = "kite"`) and a session, contracts are
the instrument master's and a leg fills at once at the quote's ask (buy) or bid (sell). Otherwise contracts
are named by their legs' labels (`NIFTY 2025-03-13 22650 CE`) with the spec's lot size (75 until the
2025-12-30 expiry, 65 after), and a leg fills at its Black-Scholes value (`engine.options`) with the index
level and realised volatility the desk last observed and the time left to the expiry's 15:30 IST close,
moved two ticks against the trader; such a fill is marked `modelled`, and every message and report of the
spread says so. Fills are kept by tag, so a leg sent again returns its first fill.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Final, Protocol

from engine.options import LegFill, LegOrder, OptionType, black_scholes, lot_size
from engine.ports import BrokerError, BrokerErrorKind, BrokerSession
from engine.trading import Quote

TICK: Final = Decimal("0.05")
SLIPPAGE_TICKS: Final = 2
EXPIRY_CLOSE_IST: Final = time(15, 30)
IST: Final = timedelta(hours=5, minutes=30)
YEAR: Final = timedelta(days=365.25)


def contract_label(name: str, expiry: date, strike: int, kind: OptionType) -> str:
    return f"{name} {expiry.isoformat()} {strike} {kind.value}"


class OptionQuotes(Protocol):
    """Live option quotes and contracts (Kite), usable only while its session is valid."""

    def current_session(self) -> BrokerSession | None: ...

    async def option_quote(self, tradingsymbol: str) -> Quote: ...

    async def option_contract(self, name: str, expiry: date, strike: int, kind: OptionType) -> tuple[str, int]: ...


class PaperOptionLegs:
    """A LegVenue (and contract source) that fills option legs on paper: quoted when it can, else modelled."""

    def __init__(self, quotes: OptionQuotes | None = None) -> None:
        self.quotes = quotes
        self.name = "paper (Kite quotes, modelled without a session)" if quotes else "paper (modelled options)"
        self._fills: dict[str, LegFill] = {}
        self._spot: float | None = None
        self._vol = 0.0
        self._at: datetime | None = None

    def observe(self, spot: float, vol: float, at: datetime) -> None:
        self._spot, self._vol, self._at = spot, vol, at

    def _quoted(self) -> OptionQuotes | None:
        return self.quotes if self.quotes is not None and self.quotes.current_session() is not None else None

    async def option_contract(self, name: str, expiry: date, strike: int, kind: OptionType) -> tuple[str, int]:
        quotes = self._quoted()
        if quotes is not None:
            return await quotes.option_contract(name, expiry, strike, kind)
        return contract_label(name, expiry, strike, kind), lot_size(expiry)

    async def leg_fill(self, order: LegOrder) -> LegFill:
        known = self._fills.get(order.tag)
        if known is not None:
            return known
        quotes = self._quoted()
        if quotes is not None and " " not in order.tradingsymbol:  # a listed contract: fill at its quote
            quote = await quotes.option_quote(order.tradingsymbol)
            price = quote.ask if order.buy else quote.bid
            fill = LegFill(order.tag, order.tradingsymbol, order.buy, order.quantity, price)
            self._fills[order.tag] = fill
            return fill
        if self._spot is None or self._at is None:
            raise BrokerError("no index level observed yet to model the option's price", BrokerErrorKind.TRANSIENT)
        try:
            _, day, strike, kind = order.tradingsymbol.split()
            expiry, k, option = date.fromisoformat(day), int(strike), OptionType(kind)
        except ValueError as exc:
            raise BrokerError(f"{order.tradingsymbol} is not a modelled contract's name") from exc
        close = datetime.combine(expiry, EXPIRY_CLOSE_IST, tzinfo=UTC) - IST
        years = max((close - self._at) / YEAR, 0.0)
        value = Decimal(repr(black_scholes(option, self._spot, k, years, self._vol)))
        slip = TICK * SLIPPAGE_TICKS
        if order.buy:
            price = (value + slip).quantize(TICK, ROUND_CEILING)
        else:
            price = max((value - slip).quantize(TICK, ROUND_FLOOR), Decimal(0))
        fill = LegFill(order.tag, order.tradingsymbol, order.buy, order.quantity, price, modelled=True)
        self._fills[order.tag] = fill
        return fill

    async def leg_status(self, tag: str) -> LegFill | None:
        return self._fills.get(tag)
