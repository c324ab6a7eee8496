"""The Kite Connect adapter against a local fake Kite server that answers in Kite's documented shapes."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.brokers.kite.broker import KiteBroker, kite_time
from bot.brokers.kite.client import KiteClient, RateClass, RateLimiter
from bot.brokers.kite.session import KiteSettings, TokenFile, request_token_from, session_expiry
from engine.catalog import default_instrument
from engine.domain import Side
from engine.ports import BrokerError, BrokerErrorKind
from engine.trading import OrderRequest, OrderState, Trade, TradeKind
from tests.fakes.kite_server import API_KEY, API_SECRET, FakeKite, Fault, Route

SBIN = default_instrument("SBIN")


def fast() -> RateLimiter:
    """The tests' own pace; Kite's limits are tested apart."""
    return RateLimiter(dict.fromkeys(RateClass, 1000.0))


@pytest.fixture
async def kite() -> AsyncIterator[FakeKite]:
    async with FakeKite() as server:
        server.set_quote("NSE:SBIN", "812.40", "812.55")
        yield server


def settings(kite: FakeKite) -> KiteSettings:
    return KiteSettings(API_KEY, SecretStr(API_SECRET), base_url=kite.base_url, timeout_s=1.0)


@pytest.fixture
async def broker(kite: FakeKite) -> AsyncIterator[KiteBroker]:
    client = KiteClient(settings(kite), limiter=fast())
    b = KiteBroker(client, {"SBIN": SBIN}, poll_interval_s=0.01)
    await b.login(kite.issue_request_token())
    yield b
    await client.aclose()


def order(cid: str = "a1b2c3d4e5", qty: str = "10") -> OrderRequest:
    return OrderRequest(cid, "SBIN", Side.LONG, Decimal(qty), stop=Decimal("800"), target=Decimal("830"))


def test_login_link_token_parsing_and_the_0600_expiry() -> None:
    s = KiteSettings(API_KEY, SecretStr(API_SECRET))
    assert s.login_url == f"https://kite.zerodha.com/connect/login?v=3&api_key={API_KEY}"
    url = "https://example.com/kite?action=login&type=login&status=success&request_token=Ab12Cd34Ef56"
    assert request_token_from(url) == "Ab12Cd34Ef56" and request_token_from(" Ab12Cd34Ef56 ") == "Ab12Cd34Ef56"
    with pytest.raises(ValueError, match="no request_token"):
        request_token_from("https://example.com/kite?status=success")
    with pytest.raises(ValueError, match="letters and digits"):
        request_token_from("not a token!")
    with pytest.raises(ValueError, match="'cancelled'"):
        request_token_from("https://x/?status=cancelled&request_token=Ab12Cd34Ef56")
    # logged in 09:00 IST: valid until 06:00 IST tomorrow; logged in 05:00 IST: until 06:00 IST today
    assert session_expiry(datetime(2026, 1, 5, 3, 30, tzinfo=UTC)) == datetime(2026, 1, 6, 0, 30, tzinfo=UTC)
    assert session_expiry(datetime(2026, 1, 4, 23, 30, tzinfo=UTC)) == datetime(2026, 1, 5, 0, 30, tzinfo=UTC)
    assert API_SECRET not in repr(s)


async def test_login_exchanges_the_request_token_and_the_session_survives_a_restart_in_a_0600_file(
    kite: FakeKite, tmp_path: Path
) -> None:
    client = KiteClient(settings(kite))
    broker = KiteBroker(client, {"SBIN": SBIN})
    with pytest.raises(BrokerError) as no_session:
        await broker.funds()
    assert no_session.value.kind is BrokerErrorKind.SESSION and kite.requests_for(Route.MARGINS) == []
    session = await broker.login(kite.issue_request_token())
    assert (session.user_id, session.user_name) == ("AB1234", "Asha Rao")
    assert await broker.funds() == Decimal("500000.00")
    [sent] = kite.requests_for(Route.SESSION)
    assert sent.form["checksum"] != API_SECRET and API_SECRET not in str(sent.form)
    file = TokenFile(tmp_path / "kite-session.json")
    file.save(session)
    assert stat.S_IMODE(file.path.stat().st_mode) == 0o600
    restored = file.load(datetime.now(UTC))
    assert restored is not None and restored.access_token.get_secret_value() == kite.access_token
    assert file.load(session.expires_at) is None  # expired at 06:00 IST
    assert kite.access_token not in repr(session) and kite.access_token not in repr(broker)
    with pytest.raises(BrokerError, match="Token is invalid or has expired"):
        await broker.login("reqtoken0123456789")  # a request token works once
    await client.aclose()


async def test_an_order_is_tagged_with_the_signal_id_and_fills(broker: KiteBroker, kite: FakeKite) -> None:
    fill = await broker.place_order(SBIN, order())
    assert (fill.quantity, fill.price, fill.side) == (Decimal(10), Decimal("812.55"), Side.LONG)
    [sent] = kite.requests_for(Route.PLACE)
    assert sent.form["tag"] == "a1b2c3d4e5" and sent.form["product"] == "MIS" and sent.form["order_type"] == "MARKET"
    status = await broker.order_status("a1b2c3d4e5")
    assert status is not None and status.state is OrderState.FILLED
    assert await broker.order_status("ffffffffff") is None


async def test_a_lost_answer_is_found_by_tag_before_any_resend(broker: KiteBroker, kite: FakeKite) -> None:
    kite.inject(Route.PLACE, Fault.accept_then_fail())
    with pytest.raises(BrokerError) as lost:
        await broker.place_order(SBIN, order())
    assert lost.value.kind is BrokerErrorKind.TRANSIENT
    fill = await broker.place_order(SBIN, order())  # the retry finds the order by its tag
    assert fill.quantity == Decimal(10) and len(kite.orders_tagged("a1b2c3d4e5")) == 1
    assert len(kite.requests_for(Route.PLACE)) == 1


async def test_kite_refusals_are_rejections_in_kites_words(broker: KiteBroker, kite: FakeKite) -> None:
    kite.inject(Route.PLACE, Fault.reject())
    with pytest.raises(BrokerError, match="Insufficient funds") as rejected:
        await broker.place_order(SBIN, order("r1"))
    assert rejected.value.kind is BrokerErrorKind.REJECTED
    kite.inject(Route.PLACE, Fault.input_error())
    with pytest.raises(BrokerError, match="Invalid `tradingsymbol`") as bad:
        await broker.place_order(SBIN, order("r2"))
    assert bad.value.kind is BrokerErrorKind.REJECTED


async def test_outages_and_rate_limits_are_transient(broker: KiteBroker, kite: FakeKite) -> None:
    for fault in (Fault.unavailable(), Fault.rate_limited(), Fault.timeout(2.0)):
        kite.inject(Route.QUOTE, fault)
        with pytest.raises(BrokerError) as failed:
            await broker.quote(SBIN)
        assert failed.value.kind is BrokerErrorKind.TRANSIENT
    quote = await broker.quote(SBIN)
    assert (quote.bid, quote.ask) == (Decimal("812.40"), Decimal("812.55"))


async def test_an_expired_session_says_so_and_the_token_never_leaks(broker: KiteBroker, kite: FakeKite) -> None:
    kite.inject(Route.PLACE, Fault.echo_credentials())
    with pytest.raises(BrokerError) as echoed:
        await broker.place_order(SBIN, order("e1"))
    assert kite.access_token not in str(echoed.value) and "<redacted>" in str(echoed.value)
    kite.expire_session()
    with pytest.raises(BrokerError, match="session has expired") as expired:
        await broker.place_order(SBIN, order("e2"))
    assert expired.value.kind is BrokerErrorKind.SESSION


async def test_partial_fills_open_orders_and_cancel(broker: KiteBroker, kite: FakeKite) -> None:
    kite.inject(Route.PLACE, Fault.partial(4))
    fill = await broker.place_order(SBIN, order("p1"))
    assert fill.quantity == Decimal(4)
    status = await broker.order_status("p1")
    assert status is not None and status.state is OrderState.PARTIALLY_FILLED
    broker.poll_attempts = 2
    kite.inject(Route.PLACE, Fault.stays_open())
    with pytest.raises(BrokerError) as pending:
        await broker.place_order(SBIN, order("o1"))
    assert pending.value.kind is BrokerErrorKind.PENDING
    await broker.cancel("o1")
    status = await broker.order_status("o1")
    assert status is not None and status.state is OrderState.CANCELLED
    with pytest.raises(BrokerError, match="no open order"):
        await broker.cancel("o1")


async def test_closing_sends_the_opposite_order_once(broker: KiteBroker, kite: FakeKite) -> None:
    fill = await broker.place_order(SBIN, order())
    [position] = await broker.positions()
    assert (position.signal_id, position.quantity, position.stop) == ("a1b2c3d4e5", Decimal(10), Decimal("800"))
    trade = Trade(
        trade_id="a1b2c3d4e5", signal_id="a1b2c3d4e5", kind=TradeKind.LIVE, strategy="defining_order",
        symbol="SBIN", side=Side.LONG, quantity=Decimal(10), contract_size=Decimal(1), entry_time=fill.filled_at,
        entry_price=fill.price, stop=Decimal("800"), target=Decimal("830"),
    )  # fmt: skip
    kite.inject(Route.PLACE, Fault.accept_then_fail())
    with pytest.raises(BrokerError):
        await broker.close_trade(SBIN, trade)
    ended = await broker.close_trade(SBIN, trade)
    assert ended.price == Decimal("812.40") and ended.quantity == Decimal(10)
    assert len(kite.orders_tagged("a1b2c3d4e5x")) == 1 and await broker.positions() == []


def test_kite_times_are_ist_wall_clock() -> None:
    assert kite_time("2025-06-12 15:30:00") == datetime(2025, 6, 12, 10, 0, tzinfo=UTC)
    assert kite_time(None) is None


async def test_the_rate_limiter_spaces_calls_per_class() -> None:
    clock = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    limiter = RateLimiter(monotonic=lambda: clock[0], sleep=sleep)
    for _ in range(3):
        await limiter.wait(RateClass.QUOTE)  # one a second
    await limiter.wait(RateClass.ORDER)  # its own budget: no wait
    assert waits == [1.0, 2.0]
