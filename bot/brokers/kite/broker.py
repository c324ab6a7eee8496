"""The Broker port over Kite Connect for NSE cash (and the order primitives the NFO spreads use).

* Orders are MARKET (or LIMIT) regular orders tagged with the signal id (Kite's `tag`, at most 20 letters
  and digits), so a lost answer is found by its tag before anything is sent again: `place_order` first looks
  the tag up in the day's orders and returns that order's outcome; only a tag Kite has never seen is placed.
  Closing a position sends the opposite order tagged `<id>x`, found the same way.
* After placing, the order's history is polled until it is COMPLETE, REJECTED or CANCELLED; an order still
  open after the polls is PENDING, settled later by its tag (`order_status`).
* Kite keeps no stop or target for a MIS/NRML market order: the bot's monitor watches the stop (as on paper)
  and closes at market, so `trade_exit` is None and `move_stop` changes nothing at Kite.
* Fees: Kite's order APIs do not report charges; fills carry 0 and the cost model's commission covers them in
  backtests and paper. Times are Kite's IST wall-clock stamps, converted to UTC.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from pydantic import SecretStr

from bot.brokers.kite.client import KiteClient, RateClass
from bot.brokers.kite.instruments import InstrumentMaster
from bot.brokers.kite.session import KiteSession, KiteSettings, TokenFile, request_token_from, session_expiry
from engine.domain import Instrument, Side
from engine.options import LegFill, LegOrder, OptionType
from engine.ports import BrokerError, BrokerErrorKind, BrokerSession
from engine.trading import BrokerExit, ExitReason, Fill, OrderRequest, OrderState, OrderStatus, Quote, Trade, TradeKind

log = logging.getLogger(__name__)

IST: Final = timedelta(hours=5, minutes=30)
MAX_TAG: Final = 20
CLOSE_SUFFIX: Final = "x"
TERMINAL: Final = frozenset({"COMPLETE", "REJECTED", "CANCELLED"})
_TAG = re.compile(r"^[A-Za-z0-9]{1,20}$")
UNKNOWN_STRATEGY: Final = "unknown"


class Exchange(StrEnum):
    NSE = "NSE"
    NFO = "NFO"


class Product(StrEnum):
    MIS = "MIS"  # intraday: squared off by the broker near the close
    CNC = "CNC"  # cash and carry (delivery)
    NRML = "NRML"  # F&O carried overnight


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


def kite_time(text: Any) -> datetime | None:
    """Kite's `YYYY-MM-DD HH:MM:SS` IST stamp as a UTC datetime (None when absent)."""
    if not text:
        return None
    try:
        local = datetime.strptime(f"{text} +0530", "%Y-%m-%d %H:%M:%S %z")
    except ValueError as exc:
        raise BrokerError(f"Kite sent an unreadable time {text!r}", BrokerErrorKind.TRANSIENT) from exc
    return local.astimezone(UTC)


def _decimal(value: Any, what: str) -> Decimal:
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value))
    except ArithmeticError as exc:
        raise BrokerError(f"Kite sent an unreadable {what} {value!r}", BrokerErrorKind.TRANSIENT) from exc
    if not result.is_finite():
        raise BrokerError(f"Kite sent an unreadable {what} {value!r}", BrokerErrorKind.TRANSIENT)
    return result


def check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise BrokerError(f"order tag {tag!r} must be 1-{MAX_TAG} letters and digits for Kite")
    return tag


@dataclass(frozen=True, slots=True)
class KiteOrder:
    """One order as Kite shows it (its latest state)."""

    order_id: str
    tag: str | None
    status: str
    exchange: str
    tradingsymbol: str
    side: Side
    quantity: int
    filled_quantity: int
    average_price: Decimal
    message: str | None
    at: datetime | None

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> KiteOrder:
        return cls(
            order_id=str(raw.get("order_id")),
            tag=raw.get("tag"),
            status=str(raw.get("status") or ""),
            exchange=str(raw.get("exchange") or ""),
            tradingsymbol=str(raw.get("tradingsymbol") or ""),
            side=Side.LONG if raw.get("transaction_type") == "BUY" else Side.SHORT,
            quantity=int(raw.get("quantity") or 0),
            filled_quantity=int(raw.get("filled_quantity") or 0),
            average_price=_decimal(raw.get("average_price") or 0, "average price"),
            message=raw.get("status_message"),
            at=kite_time(raw.get("exchange_timestamp") or raw.get("order_timestamp")),
        )

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def state(self) -> OrderState:
        if self.status == "COMPLETE":
            return OrderState.FILLED
        if self.status in ("CANCELLED", "REJECTED") and self.filled_quantity > 0:
            return OrderState.PARTIALLY_FILLED
        if self.status == "REJECTED":
            return OrderState.REJECTED
        if self.status == "CANCELLED":
            return OrderState.CANCELLED
        return OrderState.PENDING


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """What to send: one regular order on one tradingsymbol, tagged."""

    exchange: Exchange
    tradingsymbol: str
    side: Side
    quantity: int
    product: Product
    tag: str
    order_type: OrderType = OrderType.MARKET
    price: Decimal | None = None

    def __post_init__(self) -> None:
        check_tag(self.tag)
        if self.quantity < 1:
            raise ValueError(f"order {self.tag}: quantity must be positive, was {self.quantity}")
        if (self.order_type is OrderType.LIMIT) != (self.price is not None):
            raise ValueError(f"order {self.tag}: a LIMIT order needs a price and a MARKET order none")

    def form(self) -> dict[str, str]:
        body = {
            "tradingsymbol": self.tradingsymbol,
            "exchange": self.exchange.value,
            "transaction_type": "BUY" if self.side is Side.LONG else "SELL",
            "order_type": self.order_type.value,
            "quantity": str(self.quantity),
            "product": self.product.value,
            "validity": "DAY",
            "tag": self.tag,
        }
        if self.price is not None:
            body["price"] = format(self.price, "f")
        return body


class KiteBroker:
    """Kite Connect as a Broker for NSE cash, plus tagged orders on any NSE/NFO tradingsymbol."""

    name = "kite"

    def __init__(
        self,
        client: KiteClient,
        instruments: Mapping[str, Instrument],
        *,
        product: Product = Product.MIS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll_interval_s: float = 0.2,
        poll_attempts: int = 10,
        session_file: TokenFile | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.instruments = dict(instruments)
        self.product = product
        self.now = now
        self.poll_interval_s = poll_interval_s
        self.poll_attempts = poll_attempts
        self.session: KiteSession | None = None
        self.session_file = session_file
        self.on_token = on_token  # told each new access token (to mask it in every log line)
        client.on_session_expired = self.expire
        self._levels: dict[str, tuple[Decimal, Decimal]] = {}  # tag -> (stop, target) of orders placed here
        self._master: InstrumentMaster | None = None

    def __repr__(self) -> str:
        return f"KiteBroker({self.client.settings.api_key}, {'logged in' if self.session else 'no session'})"

    @property
    def settings(self) -> KiteSettings:
        return self.client.settings

    # ------------------------------------------------------------------------------------------ session

    def session_valid(self) -> bool:
        return self.session is not None and self.session.valid_at(self.now())

    def restore(self, session: KiteSession | None) -> None:
        """Use a saved session (None: no session)."""
        self.session = session if session is not None and session.valid_at(self.now()) else None
        token = self.session.access_token.get_secret_value() if self.session else None
        self.client.use_token(token)
        if token and self.on_token is not None:
            self.on_token(token)

    def restore_saved(self) -> bool:
        """Use the session saved in the token file if it is still valid; whether there was one."""
        if self.session_file is None:
            return False
        self.restore(self.session_file.load(self.now()))
        return self.session is not None

    @property
    def login_url(self) -> str:
        return self.settings.login_url

    def current_session(self) -> BrokerSession | None:
        if self.session is None or not self.session.valid_at(self.now()):
            return None
        s = self.session
        return BrokerSession(self.name, s.user_id, s.user_name, s.expires_at)

    async def login_from(self, text: str) -> BrokerSession:
        """Log in with the redirect address or request token the owner sent; save the session (0600)."""
        session = await self.login(request_token_from(text))
        if self.session_file is not None:
            self.session_file.save(session)
        current = self.current_session()
        assert current is not None
        return current

    def expire(self) -> None:
        """Forget the session Kite said has expired (and its file)."""
        self.restore(None)
        if self.session_file is not None:
            self.session_file.clear()

    async def login(self, request_token: str) -> KiteSession:
        """Exchange the request token for today's access token (`POST /session/token`)."""
        form = {
            "api_key": self.settings.api_key,
            "request_token": request_token,
            "checksum": self.settings.checksum(request_token),
        }
        data = await self.client.call("POST", "/session/token", form=form, what="Kite login", authenticated=False)
        token = str((data or {}).get("access_token") or "")
        if not token:
            raise BrokerError("Kite login: the answer had no access token", BrokerErrorKind.TRANSIENT)
        logged = kite_time(data.get("login_time")) or self.now()
        session = KiteSession(
            user_id=str(data.get("user_id") or ""),
            user_name=str(data.get("user_name") or data.get("user_shortname") or ""),
            access_token=SecretStr(token),
            login_time=logged,
            expires_at=session_expiry(self.now()),
        )
        self.restore(session)
        log.info("Kite session for %s until %s", session.user_id, session.expires_at.isoformat())
        return session

    async def logout(self) -> None:
        """End the session at Kite (`DELETE /session/token`) and forget it."""
        if self.session is not None:
            params = {"api_key": self.settings.api_key, "access_token": self.session.access_token.get_secret_value()}
            try:
                await self.client.call("DELETE", "/session/token", params=params, what="Kite logout")
            finally:
                self.expire()

    async def funds(self) -> Decimal:
        """Net equity-segment funds (INR), which the login confirmation and sizing use."""
        data = await self.client.call("GET", "/user/margins/equity", what="Kite funds")
        return _decimal((data or {}).get("net"), "net funds")

    # ------------------------------------------------------------------------------------------ the port

    async def quote(self, instrument: Instrument) -> Quote:
        key = f"{Exchange.NSE.value}:{instrument.symbol}"
        data = await self.client.call(
            "GET", "/quote", params={"i": key}, rate=RateClass.QUOTE, what=f"Kite quote {key}"
        )
        return self._quote_of((data or {}).get(key), instrument.symbol)

    def _quote_of(self, raw: Any, symbol: str) -> Quote:
        """The best bid and ask of one instrument in a `/quote` answer."""
        if not isinstance(raw, dict):
            raise BrokerError(f"no Kite quote for {symbol}")
        depth = raw.get("depth") or {}
        bids = [b for b in depth.get("buy") or [] if _decimal(b.get("price", 0), "bid") > 0]
        asks = [a for a in depth.get("sell") or [] if _decimal(a.get("price", 0), "ask") > 0]
        if not bids or not asks:
            raise BrokerError(f"no Kite bid and ask for {symbol}: the market is closed or halted")
        at = kite_time(raw.get("timestamp")) or self.now()
        return Quote(symbol, _decimal(bids[0]["price"], "bid"), _decimal(asks[0]["price"], "ask"), at)

    async def place_order(self, instrument: Instrument, request: OrderRequest) -> Fill:
        spec = OrderSpec(
            Exchange.NSE,
            instrument.symbol,
            request.side,
            self._shares(instrument, request.quantity),
            self.product,
            check_tag(request.client_order_id),
        )
        if request.stop is not None and request.target is not None:
            self._levels[spec.tag] = (request.stop, request.target)
        order = await self.submit(spec)
        return self._fill(order, request.client_order_id, request.symbol, instrument)

    async def order_status(self, client_order_id: str) -> OrderStatus | None:
        order = await self.find(client_order_id)
        if order is None:
            return None
        instrument = self.instruments.get(order.tradingsymbol)
        size = instrument.contract_size if instrument is not None else Decimal(1)
        return OrderStatus(
            client_order_id,
            order.state,
            filled_quantity=Decimal(order.filled_quantity) / size,
            average_price=order.average_price if order.filled_quantity else None,
            fees=Decimal(0),
            filled_at=order.at if order.filled_quantity else None,
            broker_order_id=order.order_id,
            reason=order.message,
        )

    async def cancel(self, client_order_id: str) -> None:
        order = await self.find(client_order_id)
        if order is None or order.done:
            raise BrokerError(f"Kite has no open order {client_order_id} to cancel")
        await self.client.call(
            "DELETE", f"/orders/regular/{order.order_id}", rate=RateClass.ORDER, what=f"Kite cancel {client_order_id}"
        )

    async def positions(self) -> list[Trade]:
        """Open net positions in configured symbols that this broker opened (their stop and target known)."""
        data = await self.client.call("GET", "/portfolio/positions", what="Kite positions")
        orders = await self.orders()
        tags = {o.tradingsymbol: o for o in orders if o.tag in self._levels and o.filled_quantity}
        trades = []
        for raw in (data or {}).get("net") or []:
            symbol, qty = str(raw.get("tradingsymbol")), int(raw.get("quantity") or 0)
            instrument, order = self.instruments.get(symbol), tags.get(symbol)
            if qty == 0 or instrument is None:
                continue
            if order is None or order.tag is None:
                log.warning("Kite position in %s was not opened by this bot today: not tracked", symbol)
                continue
            stop, target = self._levels[order.tag]
            trades.append(
                Trade(
                    trade_id=order.tag,
                    signal_id=order.tag,
                    kind=TradeKind.LIVE,
                    strategy=UNKNOWN_STRATEGY,
                    symbol=symbol,
                    side=Side.LONG if qty > 0 else Side.SHORT,
                    quantity=Decimal(abs(qty)) / instrument.contract_size,
                    contract_size=instrument.contract_size,
                    entry_time=order.at or self.now(),
                    entry_price=_decimal(raw.get("average_price"), "average price"),
                    stop=stop,
                    target=target,
                )
            )
        return trades

    async def equity(self) -> Decimal:
        return await self.funds()

    async def trade_exit(self, client_order_id: str) -> BrokerExit | None:
        """Kite holds no stop or target for these orders: the bot closes them itself."""
        del client_order_id
        return None

    async def close_trade(self, instrument: Instrument, trade: Trade) -> BrokerExit:
        """Send the opposite market order tagged `<id>x` (found by tag first, so a retry never closes twice)."""
        tag = check_tag(f"{trade.signal_id}{CLOSE_SUFFIX}")
        spec = OrderSpec(
            Exchange.NSE,
            instrument.symbol,
            trade.side.opposite,
            self._shares(instrument, trade.quantity),
            self.product,
            tag,
        )
        order = await self.submit(spec)
        fill = self._fill(order, tag, instrument.symbol, instrument)
        return BrokerExit(
            client_order_id=trade.signal_id,
            price=fill.price,
            closed_at=fill.filled_at,
            reason=ExitReason.MANUAL,
            quantity=fill.quantity,
            fees=fill.fees,
            financing=Decimal(0),
        )

    async def move_stop(self, instrument: Instrument, trade: Trade, stop: Decimal) -> None:
        """Nothing to change at Kite: the monitor watches the stop the store holds."""
        del instrument, trade, stop

    # ------------------------------------------------------------------------------------------ options

    async def leg_fill(self, order: LegOrder) -> LegFill:
        """Fill one NFO option child order (NRML), once by its tag."""
        side = Side.LONG if order.buy else Side.SHORT
        done = await self.submit(
            OrderSpec(Exchange.NFO, order.tradingsymbol, side, order.quantity, Product.NRML, order.tag)
        )
        if done.filled_quantity <= 0:
            reason = self.client.scrub(done.message or done.status.lower())
            raise BrokerError(f"Kite rejected {order.tradingsymbol} ({order.tag}): {reason}")
        return LegFill(order.tag, order.tradingsymbol, order.buy, done.filled_quantity, done.average_price)

    async def leg_status(self, tag: str) -> LegFill | None:
        found = await self.find(tag)
        if found is None or found.filled_quantity <= 0:
            return None
        return LegFill(tag, found.tradingsymbol, found.side is Side.LONG, found.filled_quantity, found.average_price)

    async def master(self) -> InstrumentMaster:
        """Today's NFO option contracts (`GET /instruments/NFO`), fetched once per IST day."""
        today = (self.now() + IST).date()
        if self._master is None or self._master.day != today:
            text = await self.client.text("/instruments/NFO", what="Kite NFO instruments")
            self._master = InstrumentMaster.parse(text, today)
        return self._master

    async def option_quote(self, tradingsymbol: str) -> Quote:
        """The best bid and ask of an NFO contract."""
        key = f"{Exchange.NFO.value}:{tradingsymbol}"
        what = f"Kite quote {key}"
        data = await self.client.call("GET", "/quote", params={"i": key}, rate=RateClass.QUOTE, what=what)
        return self._quote_of((data or {}).get(key), tradingsymbol)

    async def option_contract(self, name: str, expiry: date, strike: int, kind: OptionType) -> tuple[str, int]:
        """The listed contract's tradingsymbol and lot size, from today's instrument master."""
        contract = (await self.master()).contract(name, expiry, strike, kind)
        if contract is None:
            raise BrokerError(f"Kite lists no {name} {expiry.isoformat()} {strike} {kind.value} contract")
        return contract.tradingsymbol, contract.lot_size

    async def basket_margin(self, orders: list[LegOrder]) -> Decimal:
        """The margin Kite requires for these legs together (`POST /margins/basket`, the hedge counted)."""
        body = [
            {
                "exchange": Exchange.NFO.value,
                "tradingsymbol": o.tradingsymbol,
                "transaction_type": "BUY" if o.buy else "SELL",
                "variety": "regular",
                "product": Product.NRML.value,
                "order_type": OrderType.MARKET.value,
                "quantity": o.quantity,
            }
            for o in orders
        ]
        data = await self.client.call(
            "POST", "/margins/basket", params={"consider_positions": "true"}, json_body=body, what="Kite basket margin"
        )
        return _decimal(((data or {}).get("final") or {}).get("total"), "basket margin")

    # ------------------------------------------------------------------------------------------ orders

    async def orders(self) -> list[KiteOrder]:
        data = await self.client.call("GET", "/orders", what="Kite orders")
        return [KiteOrder.of(raw) for raw in data or []]

    async def find(self, tag: str) -> KiteOrder | None:
        """The day's latest order with this tag, or None when Kite never received one."""
        found = [o for o in await self.orders() if o.tag == tag]
        return found[-1] if found else None

    async def submit(self, spec: OrderSpec) -> KiteOrder:
        """Place `spec` once (an order with its tag already at Kite is not sent again) and wait for its end."""
        existing = await self.find(spec.tag)
        if existing is not None:
            log.info("Kite already has order %s (%s): not sending it again", spec.tag, existing.status)
            order_id = existing.order_id
            if existing.done:
                return existing
        else:
            data = await self.client.call(
                "POST", "/orders/regular", form=spec.form(), rate=RateClass.ORDER, what=f"Kite order {spec.tag}"
            )
            order_id = str((data or {}).get("order_id") or "")
            if not order_id:
                raise BrokerError(f"Kite accepted order {spec.tag} without an order id", BrokerErrorKind.TRANSIENT)
        return await self._settle(order_id, spec.tag)

    async def _settle(self, order_id: str, tag: str) -> KiteOrder:
        for attempt in range(self.poll_attempts):
            history = await self.client.call("GET", f"/orders/{order_id}", what=f"Kite order {tag}")
            if history:
                order = KiteOrder.of(history[-1])
                if order.done:
                    return order
            if attempt + 1 < self.poll_attempts:
                await asyncio.sleep(self.poll_interval_s)
        raise BrokerError(f"Kite order {tag} is still open; it is settled by its tag later", BrokerErrorKind.PENDING)

    def _fill(self, order: KiteOrder, client_order_id: str, symbol: str, instrument: Instrument | None) -> Fill:
        if order.filled_quantity <= 0:
            reason = order.message or order.status.lower()
            raise BrokerError(f"Kite rejected order {client_order_id}: {self.client.scrub(reason)}")
        size = instrument.contract_size if instrument is not None else Decimal(1)
        return Fill(
            client_order_id=client_order_id,
            symbol=symbol,
            side=order.side,
            quantity=Decimal(order.filled_quantity) / size,
            price=order.average_price,
            fees=Decimal(0),
            filled_at=order.at or self.now(),
        )

    @staticmethod
    def _shares(instrument: Instrument, quantity: Decimal) -> int:
        units = quantity * instrument.contract_size
        if units != units.to_integral_value() or units < 1:
            raise BrokerError(
                f"{quantity} lots of {instrument.symbol} is {units.normalize()} shares; Kite needs whole shares"
            )
        return int(units)
