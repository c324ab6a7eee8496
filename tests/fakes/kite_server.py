"""An in-process fake of Kite Connect v3 (the endpoints `bot.brokers.kite` uses), over real HTTP.

Answers carry the shapes of Kite's official examples (github.com/zerodha/kiteconnect-mocks: generate_session,
orders, order_info, order_response, margins, quote, positions, session_logout, basket_margins,
instruments_all.csv): `{"status": "success", "data": ...}`, or `{"status": "error", "message": ...,
"error_type": ...}` with Kite's HTTP codes. Times are IST wall-clock `YYYY-MM-DD HH:MM:SS`.

State in memory: the app's key and secret, the issued request tokens, the session's access token, orders (a
history of states per order id, with the tag), positions, quotes, funds and the NFO instrument master.
Requests need `X-Kite-Version: 3`, and authenticated ones `Authorization: token key:access_token`.

Faults are queued per route like the fake OANDA server: `kite.inject(Route.PLACE, Fault.accept_then_fail())`.
`kite.expire_session()` makes every later call a TokenException, as at 06:00 IST.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from aiohttp import web

from tests.fakes.local_http import listen

API_KEY: Final = "kitefakekey01"
API_SECRET: Final = "kite-fake-secret-0123456789-SECRET"
ACCESS_TOKEN: Final = "kiteaccesstoken0123456789SECRET"
IST: Final = timedelta(hours=5, minutes=30)
INSTRUMENT_HEADER: Final = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
    "instrument_type,segment,exchange"
)


class Route(StrEnum):
    SESSION = "session"  # POST /session/token
    LOGOUT = "logout"  # DELETE /session/token
    PROFILE = "profile"
    MARGINS = "margins"
    PLACE = "place"  # POST /orders/regular
    ORDERS = "orders"  # GET /orders
    ORDER = "order"  # GET /orders/{id}
    CANCEL = "cancel"
    POSITIONS = "positions"
    QUOTE = "quote"
    LTP = "ltp"
    INSTRUMENTS = "instruments"
    BASKET = "basket"  # POST /margins/basket


class FaultKind(StrEnum):
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"  # 503 NetworkException, no side effect
    RATE_LIMITED = "rate_limited"  # 429
    REJECT = "reject"  # place: the order is created and REJECTED at once with `message`
    INPUT = "input"  # 400 InputException with `message`, no order
    PARTIAL = "partial"  # place: only `quantity` fills, the rest is cancelled
    OPEN = "open"  # place: the order stays OPEN (a limit order waiting)
    ACCEPT_THEN_FAIL = "accept_then_fail"  # the request takes effect; the answer is a 503
    ECHO_CREDENTIALS = "echo_credentials"  # 400 whose message repeats the Authorization header


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    seconds: float = 0.0
    message: str = ""
    quantity: int = 0

    @classmethod
    def timeout(cls, seconds: float = 2.0) -> Fault:
        return cls(FaultKind.TIMEOUT, seconds=seconds)

    @classmethod
    def unavailable(cls) -> Fault:
        return cls(FaultKind.UNAVAILABLE)

    @classmethod
    def rate_limited(cls) -> Fault:
        return cls(FaultKind.RATE_LIMITED)

    @classmethod
    def reject(
        cls, message: str = "Insufficient funds. Required margin is 95417.84 but available margin is 74251.80"
    ) -> Fault:
        return cls(FaultKind.REJECT, message=message)

    @classmethod
    def input_error(cls, message: str = "Invalid `tradingsymbol`.") -> Fault:
        return cls(FaultKind.INPUT, message=message)

    @classmethod
    def partial(cls, quantity: int) -> Fault:
        return cls(FaultKind.PARTIAL, quantity=quantity)

    @classmethod
    def stays_open(cls) -> Fault:
        return cls(FaultKind.OPEN)

    @classmethod
    def accept_then_fail(cls) -> Fault:
        return cls(FaultKind.ACCEPT_THEN_FAIL)

    @classmethod
    def echo_credentials(cls) -> Fault:
        return cls(FaultKind.ECHO_CREDENTIALS)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    route: Route
    query: dict[str, str]
    form: dict[str, str]
    authorized: bool


@dataclass
class _State:
    orders: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # order id -> history of states
    positions: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    last_id: int = 150000000000000


def kite_time(at: datetime | None = None) -> str:
    """`at` (default now) as Kite writes it: IST wall clock."""
    return ((at or datetime.now(UTC)).astimezone(UTC) + IST).strftime("%Y-%m-%d %H:%M:%S")


class FakeKite:
    """A local Kite Connect server: quotes, funds and faults set by the test; orders and requests inspected."""

    def __init__(self, api_key: str = API_KEY, api_secret: str = API_SECRET, access_token: str = ACCESS_TOKEN) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.access_token = access_token
        self.session_live = False
        self.request_tokens: set[str] = set()
        self.funds = Decimal("500000.00")
        self.quotes: dict[str, tuple[Decimal, Decimal, Decimal]] = {}  # "NSE:SBIN" -> bid, ask, last
        self.instruments: list[dict[str, Any]] = []
        self.refuse: dict[str, str] = {}  # tradingsymbol -> the rejection message every order on it gets
        self.requests: list[Recorded] = []
        self._faults: dict[Route, list[Fault]] = {}
        self._state = _State()
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeKite is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> FakeKite:
        app = web.Application()
        app.router.add_post("/session/token", self._route(Route.SESSION, self._session, auth=False))
        app.router.add_delete("/session/token", self._route(Route.LOGOUT, self._logout))
        app.router.add_get("/user/profile", self._route(Route.PROFILE, self._profile))
        app.router.add_get("/user/margins/{segment}", self._route(Route.MARGINS, self._margins))
        app.router.add_post("/orders/regular", self._route(Route.PLACE, self._place))
        app.router.add_get("/orders", self._route(Route.ORDERS, self._orders))
        app.router.add_get("/orders/{order_id}", self._route(Route.ORDER, self._order))
        app.router.add_delete("/orders/regular/{order_id}", self._route(Route.CANCEL, self._cancel))
        app.router.add_get("/portfolio/positions", self._route(Route.POSITIONS, self._positions))
        app.router.add_get("/quote", self._route(Route.QUOTE, self._quote))
        app.router.add_get("/quote/ltp", self._route(Route.LTP, self._ltp))
        app.router.add_get("/instruments/{exchange}", self._route(Route.INSTRUMENTS, self._instruments))
        app.router.add_post("/margins/basket", self._route(Route.BASKET, self._basket))
        self._runner, self._port = await listen(app, handler_cancellation=True)
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeKite:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------------------------------- test side

    def issue_request_token(self, token: str = "reqtoken0123456789") -> str:
        """What Zerodha's login page hands the browser after the owner logs in."""
        self.request_tokens.add(token)
        return token

    def expire_session(self) -> None:
        """06:00 IST: the access token stops working."""
        self.session_live = False

    def set_quote(self, key: str, bid: str, ask: str, last: str | None = None) -> None:
        self.quotes[key] = (Decimal(bid), Decimal(ask), Decimal(last or bid))

    def add_instrument(self, tradingsymbol: str, expiry: str, strike: int, kind: str, lot_size: int = 75) -> None:
        self.instruments.append(
            {
                "instrument_token": 10000 + len(self.instruments),
                "exchange_token": 100 + len(self.instruments),
                "tradingsymbol": tradingsymbol,
                "name": "NIFTY",
                "last_price": 0.0,
                "expiry": expiry,
                "strike": float(strike),
                "tick_size": 0.05,
                "lot_size": lot_size,
                "instrument_type": kind,
                "segment": "NFO-OPT",
                "exchange": "NFO",
            }
        )

    def inject(self, route: Route, *faults: Fault) -> None:
        self._faults.setdefault(route, []).extend(faults)

    @property
    def orders(self) -> list[dict[str, Any]]:
        """Each order's latest state, in placement order."""
        return [history[-1] for history in self._state.orders.values()]

    @property
    def positions(self) -> list[dict[str, Any]]:
        return [dict(p) for p in self._state.positions.values()]

    def orders_tagged(self, tag: str) -> list[dict[str, Any]]:
        return [o for o in self.orders if o.get("tag") == tag]

    def requests_for(self, route: Route) -> list[Recorded]:
        return [r for r in self.requests if r.route is route]

    # ----------------------------------------------------------------------------------------- plumbing

    def _route(self, route: Route, handler: Any, *, auth: bool = True) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            form = {k: str(v) for k, v in (await request.post()).items()} if request.method == "POST" else {}
            raw = await request.read() if request.content_type == "application/json" else b""
            body = json.loads(raw) if raw else None
            header = request.headers.get("Authorization", "")
            authorized = header == f"token {self.api_key}:{self.access_token}" and self.session_live
            self.requests.append(Recorded(request.method, request.path, route, dict(request.query), form, authorized))
            if request.headers.get("X-Kite-Version") != "3":
                return _error(400, "InputException", "Missing or invalid X-Kite-Version header.")
            if auth and not authorized:
                return _error(403, "TokenException", "Incorrect `api_key` or `access_token`.")
            queue = self._faults.get(route)
            fault = queue.pop(0) if queue else None
            if fault is not None:
                if fault.kind is FaultKind.TIMEOUT:
                    await asyncio.sleep(fault.seconds)
                    return _error(504, "NetworkException", "Gateway timed out")
                if fault.kind is FaultKind.UNAVAILABLE:
                    return _error(503, "NetworkException", "Service unavailable")
                if fault.kind is FaultKind.RATE_LIMITED:
                    return _error(429, "NetworkException", "Too many requests")
                if fault.kind is FaultKind.INPUT:
                    return _error(400, "InputException", fault.message)
                if fault.kind is FaultKind.ECHO_CREDENTIALS:
                    return _error(400, "InputException", f"Invalid request (Authorization: {header})")
            status, payload = handler(request, form, body, fault)
            if fault is not None and fault.kind is FaultKind.ACCEPT_THEN_FAIL:
                return _error(503, "NetworkException", "Service unavailable")
            if isinstance(payload, str):
                return web.Response(status=status, text=payload, content_type="text/csv")
            return web.Response(status=status, text=json.dumps(payload, default=str), content_type="application/json")

        return handle

    # ----------------------------------------------------------------------------------------- endpoints

    def _session(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        token = form.get("request_token", "")
        expected = hashlib.sha256((self.api_key + token + self.api_secret).encode()).hexdigest()
        if form.get("api_key") != self.api_key or form.get("checksum") != expected:
            return 403, _error_body("TokenException", "Invalid `checksum`.")
        if token not in self.request_tokens:
            return 403, _error_body("TokenException", "Token is invalid or has expired.")
        self.request_tokens.discard(token)  # a request token works once
        self.session_live = True
        return 200, {
            "status": "success",
            "data": {
                "user_type": "individual",
                "email": "owner@example.com",
                "user_name": "Asha Rao",
                "user_shortname": "Asha",
                "broker": "ZERODHA",
                "exchanges": ["NSE", "NFO", "BSE"],
                "products": ["CNC", "NRML", "MIS"],
                "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
                "user_id": "AB1234",
                "api_key": self.api_key,
                "access_token": self.access_token,
                "public_token": "publictoken",
                "refresh_token": "",
                "login_time": kite_time(),
                "meta": {"demat_consent": "physical"},
            },
        }

    def _logout(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        self.session_live = False
        return 200, {"status": "success", "data": True}

    def _profile(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        return 200, {"status": "success", "data": {"user_id": "AB1234", "user_name": "Asha Rao", "broker": "ZERODHA"}}

    def _margins(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        segment = {
            "enabled": True,
            "net": float(self.funds),
            "available": {
                "cash": float(self.funds),
                "opening_balance": float(self.funds),
                "live_balance": float(self.funds),
            },
            "utilised": {"debits": 0, "exposure": 0, "span": 0, "option_premium": 0},
        }
        return 200, {"status": "success", "data": segment}

    def _place(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        symbol, exchange = form.get("tradingsymbol", ""), form.get("exchange", "")
        if not symbol or exchange not in {"NSE", "NFO"} or not form.get("quantity", "").isdigit():
            return 400, _error_body("InputException", "Invalid order parameters.")
        if len(form.get("tag", "")) > 20:
            return 400, _error_body("InputException", "Tag length cannot be greater than 20 characters.")
        self._state.last_id += 1
        order_id = str(self._state.last_id)
        quantity = int(form["quantity"])
        side_buy = form.get("transaction_type") == "BUY"
        bid, ask, _last = self.quotes.get(f"{exchange}:{symbol}", (Decimal(0), Decimal(0), Decimal(0)))
        price = ask if side_buy else bid
        base = {
            "placed_by": "AB1234",
            "order_id": order_id,
            "exchange_order_id": None,
            "parent_order_id": None,
            "status_message": None,
            "status_message_raw": None,
            "order_timestamp": kite_time(),
            "exchange_update_timestamp": None,
            "exchange_timestamp": None,
            "variety": "regular",
            "modified": False,
            "exchange": exchange,
            "tradingsymbol": symbol,
            "instrument_token": 0,
            "order_type": form.get("order_type", "MARKET"),
            "transaction_type": form.get("transaction_type"),
            "validity": "DAY",
            "product": form.get("product"),
            "quantity": quantity,
            "disclosed_quantity": 0,
            "price": float(form.get("price", 0) or 0),
            "trigger_price": 0,
            "average_price": 0,
            "filled_quantity": 0,
            "pending_quantity": quantity,
            "cancelled_quantity": 0,
            "market_protection": 0,
            "meta": {},
            "tag": form.get("tag") or None,
            "guid": f"guid{order_id}",
        }
        history = [dict(base, status="PUT ORDER REQ RECEIVED"), dict(base, status="VALIDATION PENDING")]
        refusal = fault.message if fault is not None and fault.kind is FaultKind.REJECT else self.refuse.get(symbol)
        if refusal is not None:
            history.append(dict(base, status="REJECTED", status_message=refusal, pending_quantity=0))
        elif price <= 0:
            history.append(
                dict(base, status="REJECTED", status_message="No quote for the instrument.", pending_quantity=0)
            )
        elif fault is not None and fault.kind is FaultKind.OPEN:
            history.append(dict(base, status="OPEN", exchange_order_id=f"x{order_id}", exchange_timestamp=kite_time()))
        else:
            filled = fault.quantity if fault is not None and fault.kind is FaultKind.PARTIAL else quantity
            done = dict(
                base,
                status="COMPLETE" if filled == quantity else "CANCELLED",
                exchange_order_id=f"x{order_id}",
                exchange_timestamp=kite_time(),
                exchange_update_timestamp=kite_time(),
                average_price=float(price),
                filled_quantity=filled,
                pending_quantity=0,
                cancelled_quantity=quantity - filled,
            )
            history.append(done)
            self._book(exchange, symbol, form.get("product", ""), filled if side_buy else -filled, price)
        self._state.orders[order_id] = history
        return 200, {"status": "success", "data": {"order_id": order_id}}

    def _book(self, exchange: str, symbol: str, product: str, signed: int, price: Decimal) -> None:
        key = (exchange, symbol, product)
        pos = self._state.positions.setdefault(
            key,
            {"tradingsymbol": symbol, "exchange": exchange, "product": product, "quantity": 0, "average_price": 0.0},
        )
        old = int(pos["quantity"])
        new = old + signed
        if old == 0 or (old > 0) == (signed > 0):
            total = abs(old) * Decimal(str(pos["average_price"])) + abs(signed) * price
            pos["average_price"] = float(total / abs(new)) if new else 0.0
        pos["quantity"] = new

    def _orders(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        return 200, {"status": "success", "data": self.orders}

    def _order(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        history = self._state.orders.get(request.match_info["order_id"])
        if history is None:
            return 400, _error_body("InputException", "Couldn't find that `order_id`.")
        return 200, {"status": "success", "data": history}

    def _cancel(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        order_id = request.match_info["order_id"]
        history = self._state.orders.get(order_id)
        if history is None or history[-1]["status"] != "OPEN":
            return 400, _error_body("OrderException", "Order cannot be cancelled as it is being processed.")
        history.append(dict(history[-1], status="CANCELLED", cancelled_quantity=history[-1]["quantity"]))
        return 200, {"status": "success", "data": {"order_id": order_id}}

    def _positions(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        net = [dict(p) for p in self._state.positions.values()]
        return 200, {"status": "success", "data": {"net": net, "day": net}}

    def _quote(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        data = {}
        for key in request.query.getall("i", []):
            if key in self.quotes:
                bid, ask, last = self.quotes[key]
                data[key] = {
                    "instrument_token": 408065,
                    "timestamp": kite_time(),
                    "last_trade_time": kite_time(),
                    "last_price": float(last),
                    "depth": {
                        "buy": [{"price": float(bid), "quantity": 100, "orders": 3}],
                        "sell": [{"price": float(ask), "quantity": 100, "orders": 2}],
                    },
                }
        return 200, {"status": "success", "data": data}

    def _ltp(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        data = {
            key: {"instrument_token": 408065, "last_price": float(self.quotes[key][2])}
            for key in request.query.getall("i", [])
            if key in self.quotes
        }
        return 200, {"status": "success", "data": data}

    def _instruments(
        self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None
    ) -> tuple[int, Any]:
        rows = [INSTRUMENT_HEADER]
        for i in self.instruments:
            if i["exchange"] == request.match_info["exchange"]:
                rows.append(",".join(str(i[c]) for c in INSTRUMENT_HEADER.split(",")))
        return 200, "\n".join(rows) + "\n"

    def _basket(self, request: web.Request, form: dict[str, str], body: Any, fault: Fault | None) -> tuple[int, Any]:
        legs = body if isinstance(body, list) else []
        total = Decimal(0)
        for leg in legs:
            total += Decimal(120000 if leg.get("transaction_type") == "SELL" else 0) * int(leg.get("quantity", 0)) / 75
        hedged = any(leg.get("transaction_type") == "BUY" for leg in legs)
        final = total * Decimal("0.3") if hedged else total
        return 200, {
            "status": "success",
            "data": {"initial": {"total": float(total)}, "final": {"total": float(final)}, "orders": legs},
        }


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "data": None, "error_type": error_type}


def _error(status: int, error_type: str, message: str) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(_error_body(error_type, message)), content_type="application/json"
    )
