"""OandaBroker and ResilientBroker against the local fake OANDA server, over real HTTP."""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import SecretStr

from bot.brokers.oanda import OandaBroker, OandaEnvironment, OandaSettings, parse_time
from bot.brokers.resilience import BreakerState, CircuitBreaker, ResilientBroker, RetryPolicy
from engine.catalog import default_instrument
from engine.domain import Side
from engine.ports import BrokerError, BrokerErrorKind
from engine.trading import OrderRequest, OrderState, TradeKind
from tests.fakes.clock import SteppingClock
from tests.fakes.oanda_server import FakeOanda, Fault, Route

EURUSD = default_instrument("EURUSD")  # tick 0.00001, contract 100000
XAUUSD = default_instrument("XAUUSD")  # tick 0.01, contract 100
USDJPY = replace(EURUSD, symbol="USDJPY", ticker="JPY=X", tick_size=Decimal("0.001"), pip_size=Decimal("0.01"))
INSTRUMENTS = {i.symbol: i for i in (EURUSD, XAUUSD, USDJPY)}
T0 = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def oanda() -> AsyncIterator[FakeOanda]:
    async with FakeOanda() as fake:
        fake.set_price("EUR_USD", "1.08990", "1.09000", time="2024-05-06T12:34:56.123456789Z")
        fake.set_price("XAU_USD", "2310.150", "2310.450")
        fake.set_price("USD_JPY", "153.820", "153.835")
        yield fake


def settings_for(oanda: FakeOanda, token: str | None = None, timeout_s: float = 2.0) -> OandaSettings:
    return OandaSettings(
        account_id=oanda.account_id,
        token=SecretStr(token or oanda.token),
        base_url=oanda.base_url,
        timeout_s=timeout_s,
    )


@pytest.fixture
async def broker(oanda: FakeOanda) -> AsyncIterator[OandaBroker]:
    async with OandaBroker(settings_for(oanda), INSTRUMENTS) as adapter:
        yield adapter


def resilient(
    inner: OandaBroker, clock: SteppingClock | None = None, threshold: int = 5, attempts: int = 4
) -> tuple[ResilientBroker, Sleeps]:
    sleeps = Sleeps()
    breaker = CircuitBreaker("oanda", failure_threshold=threshold, cool_down=timedelta(seconds=60), clock=clock)
    policy = RetryPolicy(attempts=attempts, base_delay=0.2, max_delay=5.0, jitter=0.5)
    return ResilientBroker(inner, breaker, policy, sleep=sleeps, rng=lambda: 0.0), sleeps


def order(cid: str = "sig-1", symbol: str = "EURUSD", side: Side = Side.LONG, quantity: str = "0.10") -> OrderRequest:
    stops = {
        ("EURUSD", Side.LONG): ("1.085", "1.095"),
        ("EURUSD", Side.SHORT): ("1.095", "1.085"),
        ("XAUUSD", Side.LONG): ("2290.5", "2350"),
        ("USDJPY", Side.SHORT): ("155.25", "150.1"),
    }
    stop, target = stops[(symbol, side)]
    return OrderRequest(cid, symbol, side, Decimal(quantity), stop=Decimal(stop), target=Decimal(target))


# ------------------------------------------------------------------------------------------------ round trip


def test_settings_pick_the_environment_url_and_map_symbols() -> None:
    practice = OandaSettings(account_id="101-1", token=SecretStr("t" * 20))
    live = OandaSettings(account_id="101-1", token=SecretStr("t" * 20), environment=OandaEnvironment.LIVE)
    assert practice.url == "https://api-fxpractice.oanda.com"
    assert live.url == "https://api-fxtrade.oanda.com"
    assert [practice.instrument_name(s) for s in ("EURUSD", "XAUUSD", "USDJPY")] == ["EUR_USD", "XAU_USD", "USD_JPY"]
    mapped = OandaSettings(account_id="101-1", token=SecretStr("t" * 20), symbols={"SPX500": "SPX500_USD"})
    assert mapped.instrument_name("SPX500") == "SPX500_USD"
    with pytest.raises(BrokerError, match="no OANDA instrument name"):
        practice.instrument_name("BTCUSDT")


def test_rfc3339_nanoseconds_are_kept_to_the_microsecond() -> None:
    assert parse_time("2024-05-06T12:34:56.123456789Z") == datetime(2024, 5, 6, 12, 34, 56, 123456, tzinfo=UTC)
    assert parse_time("2024-05-06T14:34:56+02:00") == datetime(2024, 5, 6, 12, 34, 56, tzinfo=UTC)
    assert parse_time("2024-05-06T12:34:56.5Z").microsecond == 500000


async def test_instruments_oanda_cannot_name_are_left_out(oanda: FakeOanda) -> None:
    async with OandaBroker(settings_for(oanda), {**INSTRUMENTS, "SPY": default_instrument("SPY")}) as adapter:
        assert (await adapter.quote(EURUSD)).bid == Decimal("1.08990")
        with pytest.raises(BrokerError, match="no OANDA instrument name"):
            await adapter.quote(default_instrument("SPY"))


async def test_quote(broker: OandaBroker, oanda: FakeOanda) -> None:
    quote = await broker.quote(EURUSD)
    assert (quote.symbol, quote.bid, quote.ask) == ("EURUSD", Decimal("1.08990"), Decimal("1.09000"))
    assert quote.at == datetime(2024, 5, 6, 12, 34, 56, 123456, tzinfo=UTC)
    assert oanda.requests[-1].query == {"instruments": "EUR_USD"}
    assert oanda.requests[-1].authorized


async def test_a_price_oanda_marks_not_tradeable_is_no_quote(broker: OandaBroker, oanda: FakeOanda) -> None:
    oanda.set_price("EUR_USD", "1.08990", "1.09000", "2024-05-04T20:59:59Z", tradeable=False)  # the weekend close
    with pytest.raises(BrokerError, match=r"no OANDA price for EURUSD: not tradeable now \(market closed or halted\)"):
        await broker.quote(EURUSD)


async def test_place_status_positions_equity_round_trip(broker: OandaBroker, oanda: FakeOanda) -> None:
    oanda.commission = Decimal("0.5000")
    fill = await broker.place_order(EURUSD, order())
    assert (fill.client_order_id, fill.symbol, fill.side) == ("sig-1", "EURUSD", Side.LONG)
    assert fill.quantity == Decimal("0.10")
    assert fill.price == Decimal("1.09000")  # bought at the ask
    assert fill.fees == Decimal("0.5000")
    assert fill.filled_at.tzinfo is UTC

    sent = oanda.requests_for(Route.ORDERS)[0].body
    assert sent is not None
    assert sent["order"] == {
        "type": "MARKET",
        "instrument": "EUR_USD",
        "units": "+10000",
        "timeInForce": "FOK",
        "positionFill": "DEFAULT",
        "clientExtensions": {"id": "sig-1", "tag": "tradebot"},
        "tradeClientExtensions": {"id": "sig-1", "tag": "tradebot"},
        "stopLossOnFill": {"price": "1.08500", "timeInForce": "GTC"},
        "takeProfitOnFill": {"price": "1.09500", "timeInForce": "GTC"},
    }

    status = await broker.order_status("sig-1")
    assert status is not None
    assert status.state is OrderState.FILLED
    assert (status.filled_quantity, status.average_price, status.fees) == (
        Decimal("0.10"),
        Decimal("1.09000"),
        Decimal("0.5000"),
    )
    assert status.filled_at == fill.filled_at
    assert await broker.order_status("never-sent") is None

    [trade] = await broker.positions()
    assert (trade.trade_id, trade.signal_id, trade.kind) == ("sig-1", "sig-1", TradeKind.LIVE)
    assert (trade.symbol, trade.side, trade.quantity, trade.contract_size) == (
        "EURUSD",
        Side.LONG,
        Decimal("0.10"),
        Decimal(100000),
    )
    assert (trade.entry_price, trade.stop, trade.target) == (Decimal("1.09000"), Decimal("1.08500"), Decimal("1.09500"))
    assert trade.entry_time == fill.filled_at

    oanda.nav = Decimal("100123.4567")
    equity = await broker.equity()
    assert equity == Decimal("100123.4567")
    assert isinstance(equity, Decimal)


@pytest.mark.parametrize(
    ("symbol", "side", "quantity", "units", "price", "stop"),
    [
        ("EURUSD", Side.LONG, "0.10", "+10000", Decimal("1.09000"), "1.08500"),
        ("EURUSD", Side.SHORT, "0.25", "-25000", Decimal("1.08990"), "1.09500"),
        ("XAUUSD", Side.LONG, "0.05", "+5", Decimal("2310.450"), "2290.50"),
        ("USDJPY", Side.SHORT, "1.00", "-100000", Decimal("153.820"), "155.250"),
    ],
)
async def test_units_are_lots_times_contract_size_with_a_sign(
    broker: OandaBroker, oanda: FakeOanda, symbol: str, side: Side, quantity: str, units: str, price: Decimal, stop: str
) -> None:
    fill = await broker.place_order(INSTRUMENTS[symbol], order("sig-u", symbol, side, quantity))
    sent = oanda.requests_for(Route.ORDERS)[0].body
    assert sent is not None
    assert sent["order"]["units"] == units
    assert sent["order"]["stopLossOnFill"]["price"] == stop
    assert (fill.quantity, fill.price, fill.side) == (Decimal(quantity), price, side)
    [trade] = await broker.positions()
    assert (trade.quantity, trade.side) == (Decimal(quantity), side)


async def test_fractional_units_are_refused_before_sending(broker: OandaBroker, oanda: FakeOanda) -> None:
    with pytest.raises(BrokerError, match="whole units"):
        await broker.place_order(XAUUSD, order("sig-f", "XAUUSD", Side.LONG, "0.005"))
    assert oanda.requests_for(Route.ORDERS) == []


async def test_cancel_a_pending_order_and_refuse_a_filled_one(broker: OandaBroker, oanda: FakeOanda) -> None:
    oanda.add_pending_order("sig-limit", "EUR_USD", 10000)
    pending = await broker.order_status("sig-limit")
    assert pending is not None
    assert pending.state is OrderState.PENDING
    await broker.cancel("sig-limit")
    cancelled = await broker.order_status("sig-limit")
    assert cancelled is not None
    assert (cancelled.state, cancelled.reason) == (OrderState.CANCELLED, "it was cancelled on request")
    assert oanda.requests_for(Route.CANCEL)[0].path.endswith("/orders/@sig-limit/cancel")

    await broker.place_order(EURUSD, order())
    with pytest.raises(BrokerError, match="does not exist") as refused:
        await broker.cancel("sig-1")
    assert refused.value.kind is BrokerErrorKind.REJECTED


# ------------------------------------------------------------------------------------------------ broker answers


async def test_partial_fill_returns_the_filled_quantity(broker: OandaBroker, oanda: FakeOanda) -> None:
    oanda.inject(Route.ORDERS, Fault.partial(4000))
    fill = await broker.place_order(EURUSD, order())
    assert fill.quantity == Decimal("0.04")
    status = await broker.order_status("sig-1")
    assert status is not None
    assert (status.state, status.filled_quantity) == (OrderState.PARTIALLY_FILLED, Decimal("0.04"))


async def test_insufficient_margin_is_rejected_in_plain_words_and_not_retried(
    broker: OandaBroker, oanda: FakeOanda
) -> None:
    safe, sleeps = resilient(broker)
    oanda.inject(Route.ORDERS, Fault.reject("INSUFFICIENT_MARGIN"))
    with pytest.raises(BrokerError) as rejected:
        await safe.place_order(EURUSD, order())
    assert str(rejected.value) == "OANDA rejected the order: insufficient margin"
    assert rejected.value.kind is BrokerErrorKind.REJECTED
    assert len(oanda.requests_for(Route.ORDERS)) == 1
    assert sleeps.delays == []
    status = await broker.order_status("sig-1")
    assert status is not None
    assert (status.state, status.reason) == (OrderState.CANCELLED, "insufficient margin")


async def test_market_halted_reads_plainly(broker: OandaBroker, oanda: FakeOanda) -> None:
    oanda.inject(Route.ORDERS, Fault.reject("MARKET_HALTED"))
    with pytest.raises(BrokerError, match=r"^OANDA rejected the order: the market is halted \(closed\)$"):
        await broker.place_order(EURUSD, order())


async def test_http_400_is_rejected_with_the_error_message(broker: OandaBroker, oanda: FakeOanda) -> None:
    oanda.prices.pop("USD_JPY")
    with pytest.raises(BrokerError, match="not tradeable") as rejected:
        await broker.place_order(USDJPY, order("sig-j", "USDJPY", Side.SHORT, "1.00"))
    assert rejected.value.kind is BrokerErrorKind.REJECTED


async def test_placing_the_same_client_id_again_returns_the_first_fill(broker: OandaBroker, oanda: FakeOanda) -> None:
    first = await broker.place_order(EURUSD, order())
    oanda.set_price("EUR_USD", "1.10000", "1.10010")
    again = await broker.place_order(EURUSD, order())
    assert again == first
    assert len(oanda.orders) == 1
    with pytest.raises(BrokerError, match="different details"):
        await broker.place_order(EURUSD, order(quantity="0.20"))


async def test_503_is_transient(broker: OandaBroker, oanda: FakeOanda) -> None:
    oanda.inject(Route.SUMMARY, Fault.unavailable())
    with pytest.raises(BrokerError, match="HTTP 503") as failed:
        await broker.equity()
    assert failed.value.transient


async def test_timeout_is_transient(oanda: FakeOanda) -> None:
    oanda.inject(Route.PRICING, Fault.timeout(1.0))
    async with OandaBroker(settings_for(oanda, timeout_s=0.2), INSTRUMENTS) as slow:
        with pytest.raises(BrokerError, match=r"did not answer within 0.2 s") as failed:
            await slow.quote(EURUSD)
    assert failed.value.kind is BrokerErrorKind.TRANSIENT


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = OandaSettings(account_id="101-1", token=SecretStr("x" * 20), base_url=f"http://127.0.0.1:{port}")
    async with OandaBroker(settings, INSTRUMENTS) as unreachable:
        with pytest.raises(BrokerError, match="cannot reach OANDA") as failed:
            await unreachable.equity()
    assert failed.value.transient


# ------------------------------------------------------------------------------------------------ resilience


async def test_503_then_success_places_exactly_one_order(broker: OandaBroker, oanda: FakeOanda) -> None:
    safe, sleeps = resilient(broker)
    oanda.inject(Route.ORDERS, Fault.unavailable())
    fill = await safe.place_order(EURUSD, order())
    assert fill.quantity == Decimal("0.10")
    assert len(oanda.orders) == 1
    assert len(oanda.requests_for(Route.ORDERS)) == 2
    assert len(oanda.requests_for(Route.ORDER)) == 1  # looked first: not there, so placed again
    assert sleeps.delays == [0.2]


async def test_accept_then_503_finds_the_order_instead_of_placing_twice(broker: OandaBroker, oanda: FakeOanda) -> None:
    safe, _ = resilient(broker)
    oanda.inject(Route.ORDERS, Fault.accept_then_fail())
    fill = await safe.place_order(EURUSD, order())
    assert (fill.client_order_id, fill.quantity, fill.price) == ("sig-1", Decimal("0.10"), Decimal("1.09000"))
    assert len(oanda.orders) == 1
    assert len(oanda.open_trades) == 1
    assert len(oanda.requests_for(Route.ORDERS)) == 1  # the retry found it by client id


async def test_accept_then_503_without_the_resilient_lookup_still_yields_one_order(
    broker: OandaBroker, oanda: FakeOanda
) -> None:
    oanda.inject(Route.ORDERS, Fault.accept_then_fail())
    with pytest.raises(BrokerError, match="503"):
        await broker.place_order(EURUSD, order())
    fill = await broker.place_order(EURUSD, order())  # OANDA: CLIENT_ORDER_ID_ALREADY_EXISTS -> look it up
    assert fill.quantity == Decimal("0.10")
    assert len(oanda.orders) == 1


async def test_timeout_then_success_is_one_order(oanda: FakeOanda) -> None:
    oanda.inject(Route.ORDERS, Fault.timeout(1.0))
    async with OandaBroker(settings_for(oanda, timeout_s=0.2), INSTRUMENTS) as slow:
        safe, _ = resilient(slow)
        fill = await safe.place_order(EURUSD, order())
    assert fill.quantity == Decimal("0.10")
    assert len(oanda.orders) == 1


async def test_429_retry_after_is_honoured(broker: OandaBroker, oanda: FakeOanda) -> None:
    safe, sleeps = resilient(broker)
    oanda.inject(Route.PRICING, Fault.rate_limited(retry_after=3))
    quote = await safe.quote(EURUSD)
    assert quote.bid == Decimal("1.08990")
    assert sleeps.delays == [3.0]
    assert [r.status for r in oanda.requests_for(Route.PRICING)] == [429, 200]


async def test_consecutive_failures_open_the_breaker_then_one_probe_closes_it(
    broker: OandaBroker, oanda: FakeOanda
) -> None:
    clock = SteppingClock(T0)
    safe, _ = resilient(broker, clock, threshold=3, attempts=2)
    changes: list[BreakerState] = []

    async def on_change(state: BreakerState, reason: str) -> None:
        changes.append(state)

    safe.breaker.on_change = on_change
    oanda.inject(Route.SUMMARY, *(Fault.unavailable() for _ in range(3)))
    with pytest.raises(BrokerError, match="503"):
        await safe.equity()  # two attempts
    with pytest.raises(BrokerError, match="circuit open after 3 failures; retrying at 12:01 UTC") as refused:
        await safe.equity()  # third failure opens; its retry is refused without a request
    assert refused.value.kind is BrokerErrorKind.UNAVAILABLE
    assert len(oanda.requests_for(Route.SUMMARY)) == 3

    for _ in range(5):
        with pytest.raises(BrokerError, match="circuit open"):
            await safe.place_order(EURUSD, order())
    assert len(oanda.requests) == 3  # refused fast: nothing reached the server

    clock.advance(timedelta(seconds=60))
    assert await safe.equity() == Decimal("100000.0000")  # the probe
    assert safe.breaker.state is BreakerState.CLOSED
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    await safe.place_order(EURUSD, order())
    assert len(oanda.orders) == 1


# ------------------------------------------------------------------------------------------------ secrets


async def test_the_token_never_shows(oanda: FakeOanda, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = oanda.token
    settings = settings_for(oanda, timeout_s=0.2)
    assert token not in repr(settings)
    assert token not in str(settings)

    errors: list[BaseException] = []
    async with OandaBroker(settings, INSTRUMENTS) as adapter:
        assert token not in repr(adapter)
        safe, _ = resilient(adapter, SteppingClock(T0), threshold=2, attempts=2)
        await safe.quote(EURUSD)
        await safe.place_order(EURUSD, order())
        await safe.positions()
        oanda.inject(Route.ORDERS, Fault.reject("INSUFFICIENT_MARGIN"))
        oanda.inject(Route.SUMMARY, Fault.timeout(1.0), Fault.unavailable(), Fault.rate_limited(1))
        for call in (lambda: safe.place_order(EURUSD, order("sig-2")), safe.equity, safe.equity, safe.equity):
            try:
                await call()
            except BrokerError as exc:
                errors.append(exc)
    # the wrong token: refused, and neither token is echoed
    wrong = "wrong-token-" + "z" * 30
    async with OandaBroker(settings_for(oanda, token=wrong), INSTRUMENTS) as intruder:
        with pytest.raises(BrokerError, match="refused the API token") as refused:
            await intruder.equity()
        errors.append(refused.value)
        assert wrong not in repr(intruder)

    assert len(errors) == 5
    for exc in errors:
        text = "".join(traceback.format_exception(exc))
        assert token not in text
        assert wrong not in text
    assert caplog.records
    assert token not in caplog.text
    assert wrong not in caplog.text
