"""OANDA v20 REST adapter: the Broker port over `httpx.AsyncClient`.

Quantities are lots: OANDA units = lots x contract_size (0.10 lot EURUSD = 10,000 units; 0.05 lot XAUUSD = 5 oz).
Market orders are FOK with stop-loss and take-profit attached on fill, tagged with the signal id as the client
order id, which OANDA refuses to reuse: placing an order whose id already exists returns that order's fill.

A trade closed at OANDA (its stop-loss or take-profit filled, or closed by hand) is read back by the same
client id (`trade_exit`), so the bot can record the exit the broker made. `market_order` builds the exact
order request without sending it, for `place_order` and for shadow mode alike.

Every JSON number is read as a Decimal; times are RFC3339 with nanoseconds, kept to the microsecond.
Errors become `BrokerError`: 5xx, 429, timeouts and connection errors are TRANSIENT; the broker's refusals
(4xx, an order cancelled at once such as INSUFFICIENT_MARGIN) are REJECTED, in plain words.
The API token is only ever placed in the Authorization header: never in logs, messages or reprs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from http import HTTPMethod
from typing import Any, Final
from urllib.parse import quote as url_quote

import httpx
from pydantic import SecretStr

from data.http import tls_context
from engine.domain import Instrument, Side
from engine.ports import BrokerError, BrokerErrorKind
from engine.trading import BrokerExit, ExitReason, Fill, OrderRequest, OrderState, OrderStatus, Quote, Trade, TradeKind

log = logging.getLogger(__name__)

ORDER_TAG: Final = "tradebot"
UNKNOWN_STRATEGY: Final = "unknown"  # OANDA does not know which strategy opened a trade
CLIENT_ID_EXISTS: Final = "CLIENT_ORDER_ID_ALREADY_EXISTS"
_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


class OandaEnvironment(StrEnum):
    PRACTICE = "practice"
    LIVE = "live"

    @property
    def url(self) -> str:
        return (
            "https://api-fxpractice.oanda.com" if self is OandaEnvironment.PRACTICE else "https://api-fxtrade.oanda.com"
        )


@dataclass(frozen=True)
class OandaSettings:
    """Where and as whom to trade; `token` is a SecretStr, so no repr, log line or message shows it."""

    account_id: str
    token: SecretStr
    environment: OandaEnvironment = OandaEnvironment.PRACTICE
    base_url: str | None = None  # overrides the environment's URL (tests)
    timeout_s: float = 10.0
    symbols: Mapping[str, str] = field(default_factory=dict)  # our symbol -> OANDA instrument, beyond 3_3

    def __post_init__(self) -> None:
        if not self.account_id:
            raise ValueError("OANDA account_id must not be empty")
        if not self.token.get_secret_value():
            raise ValueError("OANDA token must not be empty")
        if self.timeout_s <= 0:
            raise ValueError(f"OANDA timeout_s must be positive, was {self.timeout_s}")

    @property
    def url(self) -> str:
        return (self.base_url or self.environment.url).rstrip("/")

    def instrument_name(self, symbol: str) -> str:
        """OANDA's name of `symbol`: the override if any, else EURUSD -> EUR_USD."""
        override = self.symbols.get(symbol)
        if override is not None:
            return override
        if len(symbol) == 6 and symbol.isalpha():
            return f"{symbol[:3]}_{symbol[3:]}".upper()
        raise BrokerError(f"{symbol} has no OANDA instrument name; add it to the OANDA symbol map")


_CANCEL_WORDS: Final = {
    "INSUFFICIENT_MARGIN": "insufficient margin",
    "INSUFFICIENT_LIQUIDITY": "not enough liquidity",
    "MARKET_HALTED": "the market is halted (closed)",
    "ACCOUNT_LOCKED": "the account is locked",
    "ACCOUNT_NEW_POSITIONS_LOCKED": "the account may not open new positions",
    "ACCOUNT_ORDER_CREATION_LOCKED": "the account may not create orders",
    "ACCOUNT_ORDER_FILL_LOCKED": "the account may not fill orders",
    "POSITION_SIZE_EXCEEDED": "the position would be larger than allowed",
    "STOP_LOSS_ON_FILL_LOSS": "the stop-loss is on the wrong side of the price",
    "TAKE_PROFIT_ON_FILL_LOSS": "the take-profit is on the wrong side of the price",
    "FIFO_VIOLATION": "it would break the FIFO rule",
    "CLIENT_REQUEST": "it was cancelled on request",
}


def plain_reason(reason: str) -> str:
    """OANDA's reason code in plain words (INSUFFICIENT_MARGIN -> "insufficient margin")."""
    return _CANCEL_WORDS.get(reason, reason.replace("_", " ").lower())


def parse_time(text: str) -> datetime:
    """Parse an RFC3339 time with up to nanoseconds to a UTC datetime, truncated to the microsecond."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise BrokerError(f"OANDA sent an unreadable time {text!r}", BrokerErrorKind.TRANSIENT)
    whole, fraction, zone = match.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    parsed = datetime.fromisoformat(f"{whole}.{micros}{'+00:00' if zone == 'Z' else zone}")
    return parsed.astimezone(UTC)


def _decimal(value: Any, what: str) -> Decimal:
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value))
    except ArithmeticError as exc:
        raise BrokerError(f"OANDA sent an unreadable {what} {value!r}", BrokerErrorKind.TRANSIENT) from exc
    if not result.is_finite():
        raise BrokerError(f"OANDA sent an unreadable {what} {value!r}", BrokerErrorKind.TRANSIENT)
    return result


def _price_text(instrument: Instrument, price: Decimal) -> str:
    return format(instrument.price(price), "f")


def _json_text(body: Mapping[str, Any]) -> str:
    """The exact JSON text of a request body, as it goes on the wire."""
    return json.dumps(body)


@dataclass(frozen=True)
class OandaRequest:
    """One REST call to OANDA as it is sent: method, path under the base URL and JSON body (never the token)."""

    method: HTTPMethod
    path: str
    body: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.path.startswith("/v3/"):
            raise ValueError(f"OANDA request path must start with /v3/, was {self.path!r}")

    @property
    def content(self) -> str | None:
        """The body's exact JSON text, or None without a body."""
        return None if self.body is None else _json_text(self.body)


def account_path(settings: OandaSettings) -> str:
    """The REST path of the configured account (`/v3/accounts/<id>`)."""
    return f"/v3/accounts/{url_quote(settings.account_id, safe='')}"


def order_units(instrument: Instrument, request: OrderRequest) -> int:
    """OANDA units of `request` (lots x contract size); BrokerError when that is not a whole number."""
    units = request.quantity * instrument.contract_size
    if units != units.to_integral_value():
        raise BrokerError(
            f"{request.quantity} lots of {instrument.symbol} is {units.normalize()} units; OANDA needs whole units"
        )
    return int(units)


def order_body(settings: OandaSettings, instrument: Instrument, request: OrderRequest) -> dict[str, Any]:
    """The JSON body of `request` as a FOK market order tagged with its client id, stop and target attached."""
    cid = request.client_order_id
    if request.symbol != instrument.symbol:
        raise BrokerError(f"order {cid} is for {request.symbol}, sent as {instrument.symbol}")
    name = settings.instrument_name(instrument.symbol)
    units = order_units(instrument, request)
    order: dict[str, Any] = {
        "type": "MARKET",
        "instrument": name,
        "units": f"{'+' if request.side is Side.LONG else '-'}{units}",
        "timeInForce": "FOK",
        "positionFill": "DEFAULT",
        "clientExtensions": {"id": cid, "tag": ORDER_TAG},
        "tradeClientExtensions": {"id": cid, "tag": ORDER_TAG},
    }
    if request.stop is not None:
        order["stopLossOnFill"] = {"price": _price_text(instrument, request.stop), "timeInForce": "GTC"}
    if request.target is not None:
        order["takeProfitOnFill"] = {"price": _price_text(instrument, request.target), "timeInForce": "GTC"}
    return {"order": order}


def market_order(settings: OandaSettings, instrument: Instrument, request: OrderRequest) -> OandaRequest:
    """The exact request `OandaBroker.place_order` sends for `request` (shadow mode records it instead)."""
    return OandaRequest(HTTPMethod.POST, f"{account_path(settings)}/orders", order_body(settings, instrument, request))


_EXIT_REASONS: Final = {
    "STOP_LOSS_ORDER": ExitReason.STOP,
    "GUARANTEED_STOP_LOSS_ORDER": ExitReason.STOP,
    "TRAILING_STOP_LOSS_ORDER": ExitReason.STOP,
    "TAKE_PROFIT_ORDER": ExitReason.TARGET,
}


def exit_reason(fill_reason: str) -> ExitReason:
    """Our exit reason for the reason of OANDA's closing fill; a close at OANDA by anything else is MANUAL."""
    return _EXIT_REASONS.get(fill_reason, ExitReason.MANUAL)


class OandaBroker:
    """A Broker over OANDA's v20 REST API for the configured instruments."""

    name = "oanda"

    def __init__(
        self,
        settings: OandaSettings,
        instruments: Mapping[str, Instrument],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.instruments = dict(instruments)
        self._by_name: dict[str, Instrument] = {}
        for symbol, instrument in self.instruments.items():
            try:
                self._by_name[settings.instrument_name(symbol)] = instrument
            except BrokerError:
                log.info("%s has no OANDA instrument name: OANDA will not trade it", symbol)
        self._account = account_path(settings)
        self._client = httpx.AsyncClient(
            base_url=settings.url,
            headers={
                "Authorization": f"Bearer {settings.token.get_secret_value()}",
                "Accept-Datetime-Format": "RFC3339",
                "Content-Type": "application/json",
            },
            timeout=settings.timeout_s,
            transport=transport,
            verify=tls_context(),
        )

    def __repr__(self) -> str:
        return f"OandaBroker({self.settings.environment.value}, account {self.settings.account_id})"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    async def __aenter__(self) -> OandaBroker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------------------------ the port

    async def quote(self, instrument: Instrument) -> Quote:
        """Return the current bid/ask of `instrument` with OANDA's price time."""
        name = self.settings.instrument_name(instrument.symbol)
        status, body = await self._request("GET", f"{self._account}/pricing", params={"instruments": name})
        self._raise_for(status, body, f"no OANDA price for {instrument.symbol}")
        for price in body.get("prices", []):
            if price.get("instrument") == name and price.get("tradeable") is False:
                raise BrokerError(
                    f"no OANDA price for {instrument.symbol}: not tradeable now (market closed or halted)"
                )
            if price.get("instrument") == name and price.get("bids") and price.get("asks"):
                return Quote(
                    instrument.symbol,
                    _decimal(price["bids"][0]["price"], "bid"),
                    _decimal(price["asks"][0]["price"], "ask"),
                    parse_time(price["time"]),
                )
        raise BrokerError(f"no OANDA price for {instrument.symbol}: the answer had no bid and ask for {name}")

    async def place_order(self, instrument: Instrument, request: OrderRequest) -> Fill:
        """Place a FOK market order; if its client order id already exists, return that order's fill."""
        cid = request.client_order_id
        sent = market_order(self.settings, instrument, request)
        status, body = await self._request(sent.method, sent.path, json_body=sent.body)
        if status == 400 and _reject_code(body) == CLIENT_ID_EXISTS:
            log.info("OANDA already has order %s: returning its fill", cid)
            return await self._existing_fill(instrument, request)
        self._raise_for(status, body, f"OANDA rejected order {cid}")
        fill_tx = body.get("orderFillTransaction")
        if fill_tx is not None:
            fill = self._fill(instrument, request, fill_tx)
            log.info(
                "OANDA fill %s: %s %s %s @ %s fees %s",
                cid,
                fill.side.value,
                fill.quantity,
                fill.symbol,
                fill.price,
                fill.fees,
            )
            return fill
        cancel_tx = body.get("orderCancelTransaction")
        if cancel_tx is not None:
            raise BrokerError(f"OANDA rejected the order: {plain_reason(str(cancel_tx.get('reason', 'unknown')))}")
        raise BrokerError(
            f"OANDA accepted order {cid} but did not say whether it filled; check /status", BrokerErrorKind.TRANSIENT
        )

    async def order_status(self, client_order_id: str) -> OrderStatus | None:
        """Look the order up by client id (`@id`); None when OANDA never received it."""
        found = await self._order(client_order_id)
        if found is None:
            return None
        order, instrument = found
        requested = abs(_decimal(order.get("units", "0"), "units"))
        order_id = str(order.get("id")) if order.get("id") is not None else None
        filling = order.get("fillingTransactionID")
        if filling:
            tx = await self._transaction(str(filling))
            filled = abs(_decimal(tx.get("units", "0"), "units"))
            if filled > 0:
                return OrderStatus(
                    client_order_id,
                    OrderState.FILLED if filled >= requested else OrderState.PARTIALLY_FILLED,
                    filled_quantity=filled / instrument.contract_size,
                    average_price=_fill_price(tx),
                    fees=abs(_decimal(tx.get("commission", "0"), "commission")),
                    filled_at=parse_time(tx["time"]),
                    broker_order_id=order_id,
                )
        state = str(order.get("state", ""))
        if state == "CANCELLED":
            reason = None
            cancelling = order.get("cancellingTransactionID")
            if cancelling:
                tx = await self._transaction(str(cancelling))
                reason = plain_reason(str(tx.get("reason", "unknown")))
            return OrderStatus(client_order_id, OrderState.CANCELLED, broker_order_id=order_id, reason=reason)
        if state in ("PENDING", "TRIGGERED"):
            return OrderStatus(client_order_id, OrderState.PENDING, broker_order_id=order_id)
        raise BrokerError(f"OANDA order {client_order_id} is in an unknown state {state!r}", BrokerErrorKind.TRANSIENT)

    async def cancel(self, client_order_id: str) -> None:
        """Cancel a pending order by client id; REJECTED when there is nothing to cancel."""
        path = f"{self._account}/orders/@{url_quote(client_order_id, safe='')}/cancel"
        status, body = await self._request("PUT", path)
        self._raise_for(status, body, f"OANDA could not cancel order {client_order_id}")
        log.info("OANDA cancelled order %s", client_order_id)

    async def positions(self) -> list[Trade]:
        """Open trades of the configured instruments as LIVE trades, id'd by their client id when they have one."""
        status, body = await self._request("GET", f"{self._account}/openTrades")
        self._raise_for(status, body, "OANDA could not list open trades")
        trades = []
        for raw in body.get("trades", []):
            trade = self._trade(raw)
            if trade is not None:
                trades.append(trade)
        return trades

    async def equity(self) -> Decimal:
        """The account's net asset value (NAV) in its home currency."""
        status, body = await self._request("GET", f"{self._account}/summary")
        self._raise_for(status, body, "OANDA could not read the account")
        return _decimal(body.get("account", {}).get("NAV"), "NAV")

    async def trade_exit(self, client_order_id: str) -> BrokerExit | None:
        """How the trade this order opened ended (`trades/@id`): None while OPEN, its close once CLOSED.

        The price is OANDA's average close price and the time its close time. The reason is the last closing
        fill's: a stop-loss order is STOP, a take-profit order TARGET, any other close at OANDA MANUAL.
        Fees are the closing fills' commission; financing is the trade's, as OANDA signs it.
        """
        path = f"{self._account}/trades/@{url_quote(client_order_id, safe='')}"
        status, body = await self._request("GET", path)
        if status == 404:
            raise BrokerError(f"OANDA has no trade opened by order {client_order_id}")
        self._raise_for(status, body, f"OANDA could not show the trade of order {client_order_id}")
        trade = body.get("trade")
        if not isinstance(trade, dict):
            raise BrokerError(f"OANDA sent no trade for order {client_order_id}", BrokerErrorKind.TRANSIENT)
        state = str(trade.get("state", ""))
        if state == "OPEN":
            return None
        if state != "CLOSED":
            raise BrokerError(
                f"OANDA trade of order {client_order_id} is in an unknown state {state!r}", BrokerErrorKind.TRANSIENT
            )
        name = str(trade.get("instrument", ""))
        instrument = self._by_name.get(name)
        if instrument is None:
            raise BrokerError(f"OANDA trade of order {client_order_id} is in {name}, not a configured instrument")
        closing = [await self._transaction(str(t)) for t in trade.get("closingTransactionIDs") or []]
        reason = exit_reason(str(closing[-1].get("reason", ""))) if closing else ExitReason.MANUAL
        fees = sum((abs(_decimal(tx.get("commission", "0"), "commission")) for tx in closing), Decimal(0))
        ended = BrokerExit(
            client_order_id=client_order_id,
            price=_decimal(trade.get("averageClosePrice"), "average close price"),
            closed_at=parse_time(str(trade.get("closeTime", ""))),
            reason=reason,
            quantity=abs(_decimal(trade.get("initialUnits", "0"), "units")) / instrument.contract_size,
            fees=fees,
            financing=_decimal(trade.get("financing", "0"), "financing"),
        )
        log.info(
            "OANDA trade of order %s closed (%s) @ %s at %s",
            client_order_id,
            reason.value,
            ended.price,
            ended.closed_at,
        )
        return ended

    async def close_trade(self, instrument: Instrument, trade: Trade) -> BrokerExit:
        """Close the trade this order opened (`PUT trades/@id/close`, all units) and return its closing fill; a
        trade OANDA has already closed (its stop, its target, a retry) returns that close instead."""
        cid = trade.signal_id
        path = f"{self._account}/trades/@{url_quote(cid, safe='')}/close"
        status, body = await self._request("PUT", path, json_body={"units": "ALL"})
        if status in (400, 404):
            ended = await self.trade_exit(cid)
            if ended is not None:
                log.info("OANDA trade of order %s was already closed (%s)", cid, ended.reason.value)
                return ended
        self._raise_for(status, body, f"OANDA could not close the trade of order {cid}")
        fill = body.get("orderFillTransaction")
        if fill is None:
            cancel = body.get("orderCancelTransaction")
            if cancel is not None:
                reason = plain_reason(str(cancel.get("reason", "unknown")))
                raise BrokerError(f"OANDA did not close the trade of order {cid}: {reason}")
            raise BrokerError(
                f"OANDA accepted the close of order {cid} but did not say whether it filled", BrokerErrorKind.TRANSIENT
            )
        ended = BrokerExit(
            client_order_id=cid,
            price=_fill_price(fill),
            closed_at=parse_time(str(fill.get("time", ""))),
            reason=ExitReason.MANUAL,
            quantity=abs(_decimal(fill.get("units", "0"), "units")) / instrument.contract_size,
            fees=abs(_decimal(fill.get("commission", "0"), "commission")),
            financing=_decimal(fill.get("financing", "0"), "financing"),
        )
        log.info("OANDA closed the trade of order %s @ %s", cid, ended.price)
        return ended

    async def move_stop(self, instrument: Instrument, trade: Trade, stop: Decimal) -> None:
        """Replace the stop-loss order of the trade this order opened (`PUT trades/@id/orders`)."""
        cid = trade.signal_id
        path = f"{self._account}/trades/@{url_quote(cid, safe='')}/orders"
        body = {"stopLoss": {"price": _price_text(instrument, stop), "timeInForce": "GTC"}}
        status, answer = await self._request("PUT", path, json_body=body)
        self._raise_for(status, answer, f"OANDA did not move the stop of order {cid}")
        log.info("OANDA stop of order %s moved to %s", cid, stop)

    # ------------------------------------------------------------------------------------------ helpers

    def _fill(self, instrument: Instrument, request: OrderRequest, tx: dict[str, Any]) -> Fill:
        units = abs(_decimal(tx.get("units", "0"), "units"))
        if units == 0:
            raise BrokerError(f"OANDA filled nothing of order {request.client_order_id}")
        return Fill(
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            quantity=units / instrument.contract_size,
            price=_fill_price(tx),
            fees=abs(_decimal(tx.get("commission", "0"), "commission")),
            filled_at=parse_time(tx["time"]),
        )

    async def _existing_fill(self, instrument: Instrument, request: OrderRequest) -> Fill:
        cid = request.client_order_id
        name = self.settings.instrument_name(instrument.symbol)
        units = order_units(instrument, request)
        found = await self._order(cid)
        if found is None:  # OANDA said it exists; it must be visible soon
            raise BrokerError(f"OANDA has order {cid} but could not show it yet", BrokerErrorKind.TRANSIENT)
        order, _ = found
        signed = units if request.side is Side.LONG else -units
        if order.get("instrument") != name or _decimal(order.get("units", "0"), "units") != signed:
            raise BrokerError(
                f"order {cid} was already placed with different details "
                f"({order.get('units')} units of {order.get('instrument')})"
            )
        filling = order.get("fillingTransactionID")
        if filling:
            return self._fill(instrument, request, await self._transaction(str(filling)))
        if order.get("state") == "CANCELLED":
            reason = "unknown"
            cancelling = order.get("cancellingTransactionID")
            if cancelling:
                reason = str((await self._transaction(str(cancelling))).get("reason", reason))
            raise BrokerError(f"OANDA rejected the order: {plain_reason(reason)}")
        raise BrokerError(f"OANDA order {cid} is still pending", BrokerErrorKind.TRANSIENT)

    async def _order(self, client_order_id: str) -> tuple[dict[str, Any], Instrument] | None:
        path = f"{self._account}/orders/@{url_quote(client_order_id, safe='')}"
        status, body = await self._request("GET", path)
        if status == 404:
            return None
        self._raise_for(status, body, f"OANDA could not show order {client_order_id}")
        order = body.get("order") or {}
        name = str(order.get("instrument", ""))
        instrument = self._by_name.get(name)
        if instrument is None:
            raise BrokerError(f"OANDA order {client_order_id} is for {name}, which is not a configured instrument")
        return order, instrument

    async def _transaction(self, transaction_id: str) -> dict[str, Any]:
        path = f"{self._account}/transactions/{url_quote(transaction_id, safe='')}"
        status, body = await self._request("GET", path)
        self._raise_for(status, body, f"OANDA could not show transaction {transaction_id}")
        tx = body.get("transaction")
        if not isinstance(tx, dict):
            raise BrokerError(f"OANDA sent no transaction {transaction_id}", BrokerErrorKind.TRANSIENT)
        return tx

    def _trade(self, raw: dict[str, Any]) -> Trade | None:
        name = str(raw.get("instrument", ""))
        instrument = self._by_name.get(name)
        oanda_id = str(raw.get("id"))
        if instrument is None:
            log.warning("OANDA trade %s is in %s, which is not a configured instrument: skipped", oanda_id, name)
            return None
        units = _decimal(raw.get("currentUnits", "0"), "units")
        stop = (raw.get("stopLossOrder") or {}).get("price")
        target = (raw.get("takeProfitOrder") or {}).get("price")
        if units == 0 or stop is None or target is None:
            log.warning("OANDA trade %s (%s) has no stop-loss or take-profit order: skipped", oanda_id, name)
            return None
        client_id = (raw.get("clientExtensions") or {}).get("id")
        return Trade(
            trade_id=str(client_id or oanda_id),
            signal_id=str(client_id or f"oanda-{oanda_id}"),
            kind=TradeKind.LIVE,
            strategy=UNKNOWN_STRATEGY,
            symbol=instrument.symbol,
            side=Side.LONG if units > 0 else Side.SHORT,
            quantity=abs(units) / instrument.contract_size,
            contract_size=instrument.contract_size,
            entry_time=parse_time(raw["openTime"]),
            entry_price=_decimal(raw["price"], "price"),
            stop=_decimal(stop, "stop"),
            target=_decimal(target, "target"),
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; network failures become TRANSIENT, 429 and 5xx too; other statuses are returned."""
        content = None if json_body is None else _json_text(json_body)
        try:
            response = await self._client.request(method, path, params=params, content=content)
        except httpx.TimeoutException as exc:
            raise BrokerError(
                f"OANDA did not answer within {self.settings.timeout_s:g} s", BrokerErrorKind.TRANSIENT
            ) from exc
        except httpx.TransportError as exc:
            raise BrokerError(f"cannot reach OANDA ({type(exc).__name__})", BrokerErrorKind.TRANSIENT) from exc
        status = response.status_code
        try:
            body = json.loads(response.text, parse_float=Decimal) if response.content else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if status == 429:
            raise BrokerError(
                "OANDA is rate limiting requests (429)",
                BrokerErrorKind.TRANSIENT,
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise BrokerError(f"OANDA is unavailable (HTTP {status})", BrokerErrorKind.TRANSIENT)
        return status, body

    @staticmethod
    def _raise_for(status: int, body: dict[str, Any], what: str) -> None:
        if status < 400:
            return
        if status == 401:
            raise BrokerError(f"{what}: OANDA refused the API token (HTTP 401)")
        message = body.get("errorMessage") or _reject_code(body) or f"HTTP {status}"
        raise BrokerError(f"{what}: {message}")


def _reject_code(body: dict[str, Any]) -> str | None:
    for key in ("orderRejectTransaction", "orderCancelRejectTransaction", "stopLossOrderRejectTransaction"):
        tx = body.get(key)
        if isinstance(tx, dict) and tx.get("rejectReason"):
            return str(tx["rejectReason"])
    code = body.get("errorCode")
    return str(code) if code else None


def _fill_price(tx: dict[str, Any]) -> Decimal:
    return _decimal(tx.get("fullVWAP") or tx.get("price"), "fill price")


def _retry_after(header: str | None) -> float | None:
    if header is None:
        return None
    try:
        seconds = float(header)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
