"""An in-process fake of the OANDA v20 REST API (the endpoints `bot.brokers.oanda.OandaBroker` uses), over real HTTP.

State is in memory: prices the test sets, orders by client id, transactions, open trades, the account NAV.
Like OANDA, a second order with an existing client id is refused with 400 CLIENT_ORDER_ID_ALREADY_EXISTS, and
an order that cannot fill (margin, halted market) is answered 201 with an orderCancelTransaction.

Faults are queued per route and consumed by the next requests of that route, one each:

    async with FakeOanda() as oanda:
        oanda.set_price("EUR_USD", "1.08990", "1.09000")
        oanda.inject(Route.ORDERS, Fault.accept_then_fail())
        ... broker = OandaBroker(OandaSettings(oanda.account_id, SecretStr(oanda.token), base_url=oanda.base_url), ...)
        assert len(oanda.orders) == 1

Every request is recorded (`requests`), and every one must carry `Authorization: Bearer <token>`.

A filled order opens a trade with its stop-loss and take-profit as pending dependent orders. The test closes a
trade as OANDA would when a level is hit: `oanda.close_trade("sig-1", "1.08500", CloseReason.STOP_LOSS)` fills
the stop-loss order at that price, cancels the take-profit, and marks the trade CLOSED with its average close
price, close time and closing transaction, which `GET trades/@sig-1` then shows.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from aiohttp import web

from tests.fakes.local_http import listen

DEFAULT_TOKEN: Final = "fake-oanda-token-0123456789abcdef-SECRET"
DEFAULT_ACCOUNT: Final = "101-004-1234567-001"
_Answer = tuple[int, dict[str, Any]]
PRECISION: Final = {"EUR_USD": 5, "GBP_USD": 5, "USD_JPY": 3, "XAU_USD": 3}  # displayPrecision


class Route(StrEnum):
    PRICING = "pricing"
    ORDERS = "orders"  # POST: create
    ORDER = "order"  # GET one order
    CANCEL = "cancel"
    TRANSACTION = "transaction"
    OPEN_TRADES = "open_trades"
    TRADE = "trade"  # GET one trade
    TRADE_CLOSE = "trade_close"  # PUT: close a trade at market
    TRADE_ORDERS = "trade_orders"  # PUT: replace a trade's dependent orders (its stop-loss)
    SUMMARY = "summary"


class CloseReason(StrEnum):
    """Why a trade closed: the `reason` of OANDA's closing ORDER_FILL."""

    STOP_LOSS = "STOP_LOSS_ORDER"
    TAKE_PROFIT = "TAKE_PROFIT_ORDER"
    CLIENT = "MARKET_ORDER_TRADE_CLOSE"  # closed by hand (the web platform, or a trade close request)


class FaultKind(StrEnum):
    TIMEOUT = "timeout"  # answer only after `seconds` (longer than the client waits), with no side effect
    UNAVAILABLE = "unavailable"  # 503, no side effect
    RATE_LIMITED = "rate_limited"  # 429 with Retry-After, no side effect
    REJECT = "reject"  # orders: the order is created and cancelled at once with `reason`
    PARTIAL = "partial"  # orders: only `units` fill, the rest is cancelled
    ACCEPT_THEN_FAIL = "accept_then_fail"  # the request takes effect but the answer is a 503
    ACCEPT_THEN_HANG = "accept_then_hang"  # the request takes effect; the answer comes after `seconds`
    ECHO_CREDENTIALS = "echo_credentials"  # 400 whose errorMessage repeats the request's Authorization header


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    seconds: float = 0.0
    retry_after: int | None = None
    reason: str = ""
    units: Decimal | None = None

    @classmethod
    def timeout(cls, seconds: float = 2.0) -> Fault:
        return cls(FaultKind.TIMEOUT, seconds=seconds)

    @classmethod
    def unavailable(cls) -> Fault:
        return cls(FaultKind.UNAVAILABLE)

    @classmethod
    def rate_limited(cls, retry_after: int = 1) -> Fault:
        return cls(FaultKind.RATE_LIMITED, retry_after=retry_after)

    @classmethod
    def reject(cls, reason: str = "INSUFFICIENT_MARGIN") -> Fault:
        return cls(FaultKind.REJECT, reason=reason)

    @classmethod
    def partial(cls, units: int | str | Decimal) -> Fault:
        return cls(FaultKind.PARTIAL, units=Decimal(str(units)))

    @classmethod
    def accept_then_fail(cls) -> Fault:
        return cls(FaultKind.ACCEPT_THEN_FAIL)

    @classmethod
    def accept_then_hang(cls, seconds: float = 60.0) -> Fault:
        return cls(FaultKind.ACCEPT_THEN_HANG, seconds=seconds)

    @classmethod
    def echo_credentials(cls) -> Fault:
        """A misbehaving gateway that quotes the request's credentials back in its error text."""
        return cls(FaultKind.ECHO_CREDENTIALS)


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it (the Authorization header is reduced to whether it was right)."""

    method: str
    path: str
    route: Route | None
    query: dict[str, str]
    body: dict[str, Any] | None
    authorized: bool
    status: int = 0


@dataclass
class _Price:
    bid: str
    ask: str
    time: str | None
    tradeable: bool = True


@dataclass
class _State:
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by client id
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    trades: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_id: int = 0


def oanda_time(at: datetime | None = None) -> str:
    """`at` (default now) as OANDA writes it: RFC3339 UTC with nanoseconds."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


class FakeOanda:
    """A local OANDA v20 server: set prices, inject faults, and inspect orders and requests."""

    def __init__(self, token: str = DEFAULT_TOKEN, account_id: str = DEFAULT_ACCOUNT) -> None:
        self.token = token
        self.account_id = account_id
        self.now: datetime | None = None  # the server's clock for its transactions (None: the wall clock)
        self.nav = Decimal("100000.0000")
        self.commission = Decimal("0.0000")
        self.prices: dict[str, _Price] = {}
        self.requests: list[Recorded] = []
        self._faults: dict[Route, list[Fault]] = {}
        self._state = _State()
        self._runner: web.AppRunner | None = None
        self._port = 0

    # ----------------------------------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeOanda is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> FakeOanda:
        app = web.Application()
        prefix = "/v3/accounts/{account}"
        app.router.add_get(f"{prefix}/pricing", self._route(Route.PRICING, self._pricing))
        app.router.add_post(f"{prefix}/orders", self._route(Route.ORDERS, self._create_order))
        app.router.add_get(f"{prefix}/orders/{{spec}}", self._route(Route.ORDER, self._get_order))
        app.router.add_put(f"{prefix}/orders/{{spec}}/cancel", self._route(Route.CANCEL, self._cancel_order))
        app.router.add_get(f"{prefix}/transactions/{{tid}}", self._route(Route.TRANSACTION, self._get_transaction))
        app.router.add_get(f"{prefix}/openTrades", self._route(Route.OPEN_TRADES, self._open_trades))
        app.router.add_get(f"{prefix}/trades/{{spec}}", self._route(Route.TRADE, self._get_trade))
        app.router.add_put(f"{prefix}/trades/{{spec}}/close", self._route(Route.TRADE_CLOSE, self._close_trade))
        app.router.add_put(f"{prefix}/trades/{{spec}}/orders", self._route(Route.TRADE_ORDERS, self._trade_orders))
        app.router.add_get(f"{prefix}/summary", self._route(Route.SUMMARY, self._summary))
        self._runner, self._port = await listen(app, handler_cancellation=True)
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeOanda:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------------------------------- test side

    def set_price(
        self, instrument: str, bid: str, ask: str, time: str | None = None, *, tradeable: bool = True
    ) -> None:
        """Pin the price of an OANDA instrument (e.g. "EUR_USD"); `time` is the RFC3339 price time; `tradeable`
        False is how OANDA prices a closed or halted market."""
        self.prices[instrument] = _Price(bid, ask, time, tradeable)

    def inject(self, route: Route, *faults: Fault) -> None:
        """Queue faults for the next requests of `route`, one per request."""
        self._faults.setdefault(route, []).extend(faults)

    def add_pending_order(self, client_id: str, instrument: str, units: int) -> dict[str, Any]:
        """Store a pending (limit) order, so that cancel has something to cancel."""
        tx = self._transaction({"type": "LIMIT_ORDER", "instrument": instrument, "units": str(units)})
        order = {
            "id": tx["id"],
            "type": "LIMIT",
            "instrument": instrument,
            "units": str(units),
            "state": "PENDING",
            "createTime": tx["time"],
            "clientExtensions": {"id": client_id, "tag": "tradebot"},
        }
        self._state.orders[client_id] = order
        return order

    def close_trade(
        self,
        client_id: str,
        price: str,
        reason: CloseReason = CloseReason.STOP_LOSS,
        *,
        at: datetime | None = None,
        financing: str = "0.0000",
    ) -> dict[str, Any]:
        """Close the open trade of order `client_id` at `price` as OANDA does when `reason` fills; return the fill."""
        trade = self._find_trade(f"@{client_id}")
        if trade is None or trade["state"] != "OPEN":
            raise KeyError(f"no open trade for client id {client_id!r}")
        units = Decimal(trade["currentUnits"])
        realized = ((Decimal(price) - Decimal(trade["price"])) * units).quantize(Decimal("0.0001"))
        own = {CloseReason.STOP_LOSS: "stopLossOrder", CloseReason.TAKE_PROFIT: "takeProfitOrder"}.get(reason)
        closing_order = trade.get(own) if own else None
        if closing_order is None:  # closed by hand: OANDA makes a market order that closes the trade
            closing_order = self._transaction(
                {
                    "type": "MARKET_ORDER",
                    "reason": "TRADE_CLOSE",
                    "instrument": trade["instrument"],
                    "units": str(-units),
                    "tradeClose": {"tradeID": trade["id"], "units": "ALL"},
                },
                at,
            )
        fill = self._transaction(
            {
                "type": "ORDER_FILL",
                "orderID": closing_order["id"],
                "instrument": trade["instrument"],
                "units": str(-units),
                "price": price,
                "fullVWAP": price,
                "reason": reason.value,
                "pl": str(realized),
                "financing": financing,
                "commission": str(self.commission),
                "tradesClosed": [
                    {"tradeID": trade["id"], "units": str(-units), "realizedPL": str(realized), "financing": financing}
                ],
            },
            at,
        )
        for key in ("stopLossOrder", "takeProfitOrder"):
            dependent = trade.get(key)
            if dependent is None or dependent["state"] != "PENDING":
                continue
            if key == own:
                dependent.update(state="FILLED", fillingTransactionID=fill["id"], filledTime=fill["time"])
            else:
                cancel = self._transaction(
                    {"type": "ORDER_CANCEL", "orderID": dependent["id"], "reason": "LINKED_TRADE_CLOSED"}, at
                )
                dependent.update(state="CANCELLED", cancellingTransactionID=cancel["id"], cancelledTime=cancel["time"])
        trade.update(
            state="CLOSED",
            currentUnits="0",
            realizedPL=str(realized),
            unrealizedPL="0.0000",
            financing=financing,
            averageClosePrice=price,
            closeTime=fill["time"],
            closingTransactionIDs=[fill["id"]],
        )
        return fill

    @property
    def trades(self) -> list[dict[str, Any]]:
        """Every trade the server holds, open or closed, in opening order."""
        return list(self._state.trades.values())

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Every order the server holds, in creation order."""
        return list(self._state.orders.values())

    @property
    def open_trades(self) -> list[dict[str, Any]]:
        return [t for t in self._state.trades.values() if t["state"] == "OPEN"]

    def requests_for(self, route: Route) -> list[Recorded]:
        return [r for r in self.requests if r.route is route]

    # ----------------------------------------------------------------------------------------- plumbing

    def _route(self, route: Route, handler: Any) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body = json.loads(raw, parse_float=Decimal) if raw else None
            except ValueError:
                body = None
            authorized = request.headers.get("Authorization") == f"Bearer {self.token}"
            index = len(self.requests)
            self.requests.append(Recorded(request.method, request.path, route, dict(request.query), body, authorized))
            status, payload, headers = await self._answer(route, request, body, authorized, handler)
            self.requests[index] = Recorded(
                request.method, request.path, route, dict(request.query), body, authorized, status
            )
            return web.Response(
                status=status, text=json.dumps(payload, default=str), content_type="application/json", headers=headers
            )

        return handle

    async def _answer(
        self, route: Route, request: web.Request, body: dict[str, Any] | None, authorized: bool, handler: Any
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not authorized:
            return 401, {"errorMessage": "Insufficient authorization to perform request."}, {}
        if request.match_info["account"] != self.account_id:
            return 400, {"errorMessage": "Invalid value specified for 'accountID'"}, {}
        queue = self._faults.get(route)
        fault = queue.pop(0) if queue else None
        if fault is not None:
            if fault.kind is FaultKind.TIMEOUT:
                await asyncio.sleep(fault.seconds)
                return 503, {"errorMessage": "Service unavailable (late)"}, {}
            if fault.kind is FaultKind.UNAVAILABLE:
                return 503, {"errorMessage": "Service unavailable"}, {}
            if fault.kind is FaultKind.RATE_LIMITED:
                return 429, {"errorMessage": "Too many requests"}, {"Retry-After": str(fault.retry_after)}
            if fault.kind is FaultKind.ECHO_CREDENTIALS:
                header = request.headers.get("Authorization", "")
                return 400, {"errorMessage": f"Invalid request (Authorization: {header})"}, {}
        status, payload = handler(request, body or {}, fault)
        if fault is not None and fault.kind is FaultKind.ACCEPT_THEN_FAIL:
            return 503, {"errorMessage": "Service unavailable"}, {}
        if fault is not None and fault.kind is FaultKind.ACCEPT_THEN_HANG:
            await asyncio.sleep(fault.seconds)
        return status, payload, {}

    def _transaction(self, fields: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
        self._state.last_id += 1
        tx = {
            "id": str(self._state.last_id),
            "time": oanda_time(at or self.now),
            "accountID": self.account_id,
            **fields,
        }
        self._state.transactions[tx["id"]] = tx
        return tx

    # ----------------------------------------------------------------------------------------- endpoints

    def _pricing(self, request: web.Request, body: dict[str, Any], fault: Fault | None) -> _Answer:
        names = [n for n in request.query.get("instruments", "").split(",") if n]
        prices = []
        for name in names:
            price = self.prices.get(name)
            if price is None:
                return 400, {"errorMessage": f"Invalid value specified for 'instruments': {name}"}
            prices.append(
                {
                    "type": "PRICE",
                    "instrument": name,
                    "time": price.time or oanda_time(),
                    "tradeable": price.tradeable,
                    "bids": [{"price": price.bid, "liquidity": 10000000}],
                    "asks": [{"price": price.ask, "liquidity": 10000000}],
                    "closeoutBid": price.bid,
                    "closeoutAsk": price.ask,
                }
            )
        return 200, {"prices": prices, "time": oanda_time()}

    def _create_order(self, request: web.Request, body: dict[str, Any], fault: Fault | None) -> _Answer:
        order = body.get("order") or {}
        cid = str((order.get("clientExtensions") or {}).get("id") or "")
        name = str(order.get("instrument") or "")
        reject = self._invalid_order(order, cid, name)
        if reject is not None:
            tx = self._transaction({"type": "MARKET_ORDER_REJECT", "rejectReason": reject[0], **_order_fields(order)})
            return 400, {
                "orderRejectTransaction": tx,
                "errorCode": reject[0],
                "errorMessage": reject[1],
                "lastTransactionID": tx["id"],
            }
        units = Decimal(order["units"])
        create = self._transaction({"type": "MARKET_ORDER", "reason": "CLIENT_ORDER", **_order_fields(order)})
        stored: dict[str, Any] = {
            "id": create["id"],
            "type": "MARKET",
            "instrument": name,
            "units": order["units"],
            "timeInForce": order.get("timeInForce", "FOK"),
            "state": "PENDING",
            "createTime": create["time"],
            "clientExtensions": order.get("clientExtensions"),
            "tradeClientExtensions": order.get("tradeClientExtensions"),
        }
        self._state.orders[cid] = stored
        answer: dict[str, Any] = {"orderCreateTransaction": create}
        if fault is not None and fault.kind is FaultKind.REJECT:
            cancel = self._transaction({"type": "ORDER_CANCEL", "orderID": create["id"], "reason": fault.reason})
            stored.update(state="CANCELLED", cancellingTransactionID=cancel["id"], cancelledTime=cancel["time"])
            answer["orderCancelTransaction"] = cancel
            answer["lastTransactionID"] = cancel["id"]
            return 201, answer
        filled = units
        if fault is not None and fault.kind is FaultKind.PARTIAL and fault.units is not None:
            filled = fault.units.copy_sign(units)
        price = self.prices[name]
        fill_price = price.ask if units > 0 else price.bid
        fill = self._transaction(
            {
                "type": "ORDER_FILL",
                "orderID": create["id"],
                "clientOrderID": cid,
                "instrument": name,
                "units": str(filled),
                "price": fill_price,
                "fullVWAP": fill_price,
                "reason": "MARKET_ORDER",
                "pl": "0.0000",
                "financing": "0.0000",
                "commission": str(self.commission),
            }
        )
        trade = {
            "id": fill["id"],
            "instrument": name,
            "price": fill_price,
            "openTime": fill["time"],
            "initialUnits": str(filled),
            "currentUnits": str(filled),
            "state": "OPEN",
            "realizedPL": "0.0000",
            "unrealizedPL": "0.0000",
            "financing": "0.0000",
            "clientExtensions": order.get("tradeClientExtensions") or {},
        }
        for key, dependent, kind in (
            ("stopLossOnFill", "stopLossOrder", "STOP_LOSS"),
            ("takeProfitOnFill", "takeProfitOrder", "TAKE_PROFIT"),
        ):
            if key in order:
                created = self._transaction(
                    {"type": f"{kind}_ORDER", "tradeID": trade["id"], "price": order[key]["price"], "reason": "ON_FILL"}
                )
                trade[dependent] = {
                    "id": created["id"],
                    "type": kind,
                    "tradeID": trade["id"],
                    "price": order[key]["price"],
                    "timeInForce": order[key].get("timeInForce", "GTC"),
                    "state": "PENDING",
                    "createTime": fill["time"],
                }
        self._state.trades[trade["id"]] = trade
        fill["tradeOpened"] = {"tradeID": trade["id"], "units": str(filled), "price": fill_price}
        stored.update(
            state="FILLED", fillingTransactionID=fill["id"], filledTime=fill["time"], tradeOpenedID=trade["id"]
        )
        answer["orderFillTransaction"] = fill
        answer["lastTransactionID"] = str(self._state.last_id)
        if filled != units:
            cancel = self._transaction(
                {"type": "ORDER_CANCEL", "orderID": create["id"], "reason": "MARKET_ORDER_PARTIALLY_FILLED"}
            )
            answer["orderCancelTransaction"] = cancel
            answer["lastTransactionID"] = cancel["id"]
        return 201, answer

    def _invalid_order(self, order: dict[str, Any], cid: str, name: str) -> tuple[str, str] | None:
        if not cid:
            return "CLIENT_EXTENSIONS_ID_MISSING", "The client extensions ID is missing"
        if cid in self._state.orders:
            return "CLIENT_ORDER_ID_ALREADY_EXISTS", "The client Order ID specified is already assigned"
        if order.get("type") != "MARKET":
            return "ORDER_TYPE_NOT_SUPPORTED", "The fake supports market orders only"
        if name not in self.prices:
            return "INSTRUMENT_NOT_TRADEABLE", "The instrument specified is not tradeable"
        text = str(order.get("units", ""))
        if not text or text[0] not in "+-" or not text[1:].isdigit() or int(text[1:]) == 0:
            return "UNITS_INVALID", f"The units specified are invalid: {text!r}"
        for key in ("stopLossOnFill", "takeProfitOnFill"):
            if key in order:
                price = str(order[key].get("price", ""))
                decimals = len(price.partition(".")[2])
                if decimals > PRECISION.get(name, 5):
                    code = (
                        f"{'STOP_LOSS' if key.startswith('stop') else 'TAKE_PROFIT'}_ON_FILL_PRICE_PRECISION_EXCEEDED"
                    )
                    return code, f"The {key} price {price} has too many decimals"
        return None

    def _find_order(self, spec: str) -> dict[str, Any] | None:
        if spec.startswith("@"):
            return self._state.orders.get(spec[1:])
        return next((o for o in self._state.orders.values() if o["id"] == spec), None)

    def _get_order(self, request: web.Request, body: dict[str, Any], fault: Fault | None) -> _Answer:
        order = self._find_order(request.match_info["spec"])
        if order is None:
            return 404, {"errorCode": "ORDER_DOESNT_EXIST", "errorMessage": "The order specified does not exist"}
        return 200, {"order": order, "lastTransactionID": str(self._state.last_id)}

    def _cancel_order(self, request: web.Request, body: dict[str, Any], fault: Fault | None) -> _Answer:
        order = self._find_order(request.match_info["spec"])
        if order is None or order["state"] != "PENDING":
            tx = self._transaction({"type": "ORDER_CANCEL_REJECT", "rejectReason": "ORDER_DOESNT_EXIST"})
            return 404, {
                "orderCancelRejectTransaction": tx,
                "errorCode": "ORDER_DOESNT_EXIST",
                "errorMessage": "The Order specified does not exist",
            }
        cancel = self._transaction({"type": "ORDER_CANCEL", "orderID": order["id"], "reason": "CLIENT_REQUEST"})
        order.update(state="CANCELLED", cancellingTransactionID=cancel["id"], cancelledTime=cancel["time"])
        return 200, {"orderCancelTransaction": cancel, "lastTransactionID": cancel["id"]}

    def _find_trade(self, spec: str) -> dict[str, Any] | None:
        if spec.startswith("@"):
            client_id = spec[1:]
            return next(
                (t for t in self._state.trades.values() if (t.get("clientExtensions") or {}).get("id") == client_id),
                None,
            )
        return self._state.trades.get(spec)

    def _get_trade(self, request: web.Request, body: dict[str, Any], fault: Fault | None) -> _Answer:
        trade = self._find_trade(request.match_info["spec"])
        if trade is None:
            return 404, {"errorCode": "TRADE_DOESNT_EXIST", "errorMessage": "The Trade specified does not exist"}
        return 200, {"trade": trade, "lastTransactionID": str(self._state.last_id)}

    def _close_trade(self, request: web.Request, body: dict[str, Any], fault: Fault | None) -> _Answer:
        trade = self._find_trade(request.match_info["spec"])
        if trade is None or trade["state"] != "OPEN":
            tx = self._transaction({"type": "MARKET_ORDER_REJECT", "rejectReason": "TRADE_DOESNT_EXIST"})
            return 404, {
                "orderRejectTransaction": tx,
                "errorCode": "TRADE_DOESNT_EXIST",
                "errorMessage": "The Trade specified does not exist",
                "lastTransactionID": tx["id"],
            }
        price = self.prices[trade["instrument"]]
        if not price.tradeable:  # the closing market order is created and cancelled at once
            create = self._transaction(
                {"type": "MARKET_ORDER", "reason": "TRADE_CLOSE", "instrument": trade["instrument"]}
            )
            cancel = self._transaction({"type": "ORDER_CANCEL", "orderID": create["id"], "reason": "MARKET_HALTED"})
            return 200, {
                "orderCreateTransaction": create,
                "orderCancelTransaction": cancel,
                "lastTransactionID": cancel["id"],
            }
        client_id = (trade.get("clientExtensions") or {}).get("id") or ""
        at = price.bid if Decimal(trade["currentUnits"]) > 0 else price.ask
        fill = self.close_trade(client_id, at, CloseReason.CLIENT)
        create = self._state.transactions[fill["orderID"]]
        return 200, {
            "orderCreateTransaction": create,
            "orderFillTransaction": fill,
            "relatedTransactionIDs": [create["id"], fill["id"]],
            "lastTransactionID": str(self._state.last_id),
        }

    def _trade_orders(self, request: web.Request, body: dict[str, Any], fault: Fault | None) -> _Answer:
        trade = self._find_trade(request.match_info["spec"])
        if trade is None or trade["state"] != "OPEN":
            return 404, {"errorCode": "TRADE_DOESNT_EXIST", "errorMessage": "The Trade specified does not exist"}
        stop = body.get("stopLoss") or {}
        text = str(stop.get("price", ""))
        if len(text.partition(".")[2]) > PRECISION.get(trade["instrument"], 5):
            tx = self._transaction({"type": "STOP_LOSS_ORDER_REJECT", "rejectReason": "PRICE_PRECISION_EXCEEDED"})
            return 400, {
                "stopLossOrderRejectTransaction": tx,
                "errorCode": "PRICE_PRECISION_EXCEEDED",
                "errorMessage": f"The stop loss price {text} has too many decimals",
            }
        answer: dict[str, Any] = {}
        old = trade.get("stopLossOrder")
        if old is not None and old["state"] == "PENDING":
            cancel = self._transaction(
                {"type": "ORDER_CANCEL", "orderID": old["id"], "reason": "CLIENT_REQUEST_REPLACED"}
            )
            old.update(state="CANCELLED", cancellingTransactionID=cancel["id"], cancelledTime=cancel["time"])
            answer["stopLossOrderCancelTransaction"] = cancel
        created = self._transaction(
            {"type": "STOP_LOSS_ORDER", "tradeID": trade["id"], "price": text, "reason": "REPLACEMENT"}
        )
        trade["stopLossOrder"] = {
            "id": created["id"],
            "type": "STOP_LOSS",
            "tradeID": trade["id"],
            "price": text,
            "timeInForce": stop.get("timeInForce", "GTC"),
            "state": "PENDING",
            "createTime": created["time"],
        }
        answer["stopLossOrderTransaction"] = created
        answer["lastTransactionID"] = created["id"]
        return 200, answer

    def _get_transaction(self, request: web.Request, body: dict[str, Any], fault: Fault | None) -> _Answer:
        tx = self._state.transactions.get(request.match_info["tid"])
        if tx is None:
            return 404, {"errorMessage": "The transaction specified does not exist"}
        return 200, {"transaction": tx, "lastTransactionID": str(self._state.last_id)}

    def _open_trades(self, request: web.Request, body: dict[str, Any], fault: Fault | None) -> _Answer:
        return 200, {"trades": self.open_trades, "lastTransactionID": str(self._state.last_id)}

    def _summary(self, request: web.Request, body: dict[str, Any], fault: Fault | None) -> _Answer:
        account = {
            "id": self.account_id,
            "currency": "USD",
            "balance": str(self.nav),
            "NAV": str(self.nav),
            "openTradeCount": len(self.open_trades),
        }
        return 200, {"account": account, "lastTransactionID": str(self._state.last_id)}


def _order_fields(order: dict[str, Any]) -> dict[str, Any]:
    keys = ("instrument", "units", "timeInForce", "positionFill", "clientExtensions", "tradeClientExtensions")
    return {k: order[k] for k in keys if k in order}
