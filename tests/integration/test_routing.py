"""Orders routed by market: NSE to Kite (a fake Kite server), everything else to paper; the daily login's
reminder and the notice of a session that ended early."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.brokers.kite.broker import KiteBroker
from bot.brokers.kite.client import KiteClient, RateClass, RateLimiter
from bot.brokers.kite.session import KiteSettings
from bot.brokers.paper import PaperBroker
from bot.brokers.routing import RoutingBroker
from bot.services.broker_login import BrokerLogin
from bot.services.events import Notice
from data.market.csv_provider import CsvProvider
from data.sqlite.store import SqliteStore
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.costs import CostModel
from engine.domain import Side
from engine.ports import BrokerError
from engine.routing import Market
from engine.trading import OrderRequest
from tests.fakes.clock import SteppingClock
from tests.fakes.kite_server import API_KEY, API_SECRET, FakeKite
from tests.support import require_market_dir

SBIN, GBPUSD = default_instrument("SBIN"), default_instrument("GBPUSD")
AT = datetime(2025, 6, 12, 2, 50, tzinfo=UTC)  # 08:20 IST on an NSE trading day


class Chat:
    """The announcer as the chat sees it: every event, in order."""

    def __init__(self) -> None:
        self.events: list[object] = []

    async def announce(self, event: object) -> None:
        self.events.append(event)


@pytest.fixture
async def kite() -> AsyncIterator[FakeKite]:
    async with FakeKite() as server:
        server.set_quote("NSE:SBIN", "812.40", "812.55")
        yield server


@pytest.fixture
async def kite_broker(kite: FakeKite) -> AsyncIterator[KiteBroker]:
    settings = KiteSettings(API_KEY, SecretStr(API_SECRET), base_url=kite.base_url, timeout_s=1.0)
    client = KiteClient(settings, limiter=RateLimiter(dict.fromkeys(RateClass, 1000.0)))
    clock = SteppingClock(AT)
    yield KiteBroker(client, {"SBIN": SBIN}, poll_interval_s=0.01, now=clock.now)
    await client.aclose()


async def test_nse_goes_to_kite_and_fx_to_paper(kite: FakeKite, kite_broker: KiteBroker) -> None:
    clock = SteppingClock(datetime(2025, 6, 12, 9, 40, tzinfo=UTC))
    paper = PaperBroker(CsvProvider(require_market_dir()), {"GBPUSD": GBPUSD}, clock, CostModel())
    routed = RoutingBroker({Market.NSE: kite_broker}, paper)
    with pytest.raises(BrokerError, match="no Kite session"):
        await routed.quote(SBIN)  # refused with the reason until the owner logs in
    await kite_broker.login(kite.issue_request_token())
    assert (await routed.quote(SBIN)).ask == Decimal("812.55")
    fill = await routed.place_order(SBIN, OrderRequest("a1b2c3d4e5", "SBIN", Side.LONG, Decimal(3)))
    assert fill.price == Decimal("812.55") and len(kite.orders) == 1
    fx = await routed.place_order(GBPUSD, OrderRequest("f0f0f0f0f0", "GBPUSD", Side.LONG, Decimal("0.1")))
    assert fx.symbol == "GBPUSD" and len(kite.orders) == 1  # paper filled it
    status = await routed.order_status("a1b2c3d4e5")
    assert status is not None and status.broker_order_id == kite.orders[0]["order_id"]
    assert await routed.order_status("f0f0f0f0f0") is not None  # found at paper
    assert await routed.trade_exit("a1b2c3d4e5") is None


async def test_the_morning_reminder_comes_once_a_day_and_an_early_end_is_told(
    tmp_path: Path, kite: FakeKite, kite_broker: KiteBroker
) -> None:
    store = await SqliteStore.open(tmp_path / "bot.db")
    chat, clock = Chat(), SteppingClock(AT)
    login = BrokerLogin(kite_broker, store, chat, clock, get_calendar("XNSE"), remind_before=timedelta(minutes=45))
    await login.check()
    assert chat.events == []  # 08:20: before the window
    clock.advance(timedelta(minutes=15))
    await login.check()
    await login.check()
    assert [type(e) for e in chat.events] == [Notice] and "no session for today" in str(chat.events[0])
    again = BrokerLogin(kite_broker, store, chat, clock, get_calendar("XNSE"))  # a restart the same morning
    await again.check()
    assert len(chat.events) == 1
    done = await login.complete(f"https://x/?status=success&request_token={kite.issue_request_token()}")
    assert done.funds == Decimal("500000.00") and "logged in as Asha Rao" in login.status()
    kite.expire_session()  # Kite ended the session mid-day
    with pytest.raises(BrokerError, match="session has expired"):
        await kite_broker.funds()
    await login.check()
    assert "session ended" in str(chat.events[-1]) and "no session today" in login.status()
    await store.close()
