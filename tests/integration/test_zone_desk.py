"""The weekly-zone desk on the shared NIFTY data: offer, approve (hedge first), exit, outcome with both legs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.brokers.kite.broker import KiteBroker
from bot.brokers.kite.client import KiteClient, RateClass, RateLimiter
from bot.brokers.kite.session import KiteSettings
from bot.brokers.paper_options import PaperOptionLegs
from bot.services.desk_core import OutcomeKind
from bot.services.events import SpreadEvent, SpreadStage
from bot.services.zones import ZoneConfig, ZoneDesk
from data.market.calendars import market_calendar
from data.market.csv_provider import CsvProvider
from data.sqlite.store import SqliteStore
from engine.catalog import default_instrument
from engine.domain import Interval, Side
from engine.options import LegOrder, OptionType
from engine.spread_book import SpreadStatus
from engine.trading import ExitReason
from tests.fakes.clock import SteppingClock
from tests.fakes.kite_server import API_KEY, API_SECRET, FakeKite, Fault, Route
from tests.support import require_market_dir

NIFTY = replace(default_instrument("NIFTY50"), interval=Interval.H1)
S3_SIGNAL = datetime(2025, 3, 10, 9, 45, 20, tzinfo=UTC)  # 15:15:20 IST: S3 short fired on the 14:15 bar
EXPIRY_CLOSE = datetime(2025, 3, 13, 10, 0, 20, tzinfo=UTC)  # Thursday 15:30:20 IST
CALL_MAIN, CALL_HEDGE = "NIFTY2531322650CE", "NIFTY2531322850CE"


class Chat:
    def __init__(self) -> None:
        self.events: list[object] = []

    async def announce(self, event: object) -> None:
        self.events.append(event)

    def stages(self) -> list[SpreadStage]:
        return [e.stage for e in self.events if isinstance(e, SpreadEvent)]


async def paper_desk(tmp_path: Path, clock: SteppingClock, chat: Chat) -> tuple[ZoneDesk, SqliteStore]:
    store = await SqliteStore.open(tmp_path / "bot.db")
    legs = PaperOptionLegs()
    provider = CsvProvider(require_market_dir())
    desk = ZoneDesk(store, provider, legs, legs, chat, clock, NIFTY, market_calendar("XNSE"), ZoneConfig(), market=legs)
    return desk, store


async def test_a_signal_is_offered_once_approved_hedge_first_and_closed_at_expiry_with_both_legs(
    tmp_path: Path,
) -> None:
    clock, chat = SteppingClock(S3_SIGNAL), Chat()
    desk, store = await paper_desk(tmp_path, clock, chat)
    await desk.run()
    await desk.run()  # the same bar seen again: offered once
    [offer] = await store.spreads([SpreadStatus.PENDING])
    assert (offer.rule, offer.side, offer.entry, offer.stop) == (
        "S3",
        Side.SHORT,
        Decimal("22469.65"),
        Decimal("22633.80"),
    )
    assert offer.expiry.isoformat() == "2025-03-13" and offer.plan.quantity == 75
    assert (offer.plan.main_symbol, offer.plan.hedge_symbol) == (
        "NIFTY 2025-03-13 22650 CE",
        "NIFTY 2025-03-13 22850 CE",
    )
    assert chat.stages() == [SpreadStage.OFFERED]
    outcomes = await asyncio.gather(*(desk.approve(offer.spread_id, 42) for _ in range(5)))
    assert [o.kind for o in outcomes].count(OutcomeKind.DONE) == 1
    [opened] = await store.spreads([SpreadStatus.OPEN])
    assert [f.tag[-3:] for f in opened.fills] == ["ho1", "mo1"] and opened.modelled
    assert opened.fills[0].buy and not opened.fills[1].buy and opened.open_quantity == 75
    clock.at = EXPIRY_CLOSE
    await desk.run()
    [closed] = await store.spreads([SpreadStatus.CLOSED])
    assert (closed.exit_reason, closed.exit_level, closed.points) == (
        ExitReason.EXPIRY,
        Decimal("22383.30"),
        Decimal("86.35"),
    )
    assert [f.tag[-3:] for f in closed.fills] == ["ho1", "mo1", "mc1", "hc1"]  # out: the main leg first
    assert closed.pnl == sum((f.price * f.quantity * (-1 if f.buy else 1) for f in closed.fills), Decimal(0))
    assert chat.stages() == [SpreadStage.OFFERED, SpreadStage.OPENED, SpreadStage.CLOSED]
    await store.close()


async def test_an_unanswered_offer_expires_at_the_next_close_and_a_press_then_is_refused(tmp_path: Path) -> None:
    clock, chat = SteppingClock(S3_SIGNAL), Chat()
    desk, store = await paper_desk(tmp_path, clock, chat)
    await desk.run()
    [offer] = await store.spreads([SpreadStatus.PENDING])
    clock.advance(timedelta(hours=1))
    assert (await desk.approve(offer.spread_id, 42)).kind is OutcomeKind.INVALID
    assert [s.status for s in await store.spreads([SpreadStatus.EXPIRED])] == [SpreadStatus.EXPIRED]
    await store.close()


async def test_an_approved_spread_left_by_a_crash_is_finished_at_restart(tmp_path: Path) -> None:
    clock, chat = SteppingClock(S3_SIGNAL), Chat()
    desk, store = await paper_desk(tmp_path, clock, chat)
    await desk.run()
    [offer] = await store.spreads([SpreadStatus.PENDING])
    await store.move_spread(offer.moved(SpreadStatus.APPROVED, decided_by=42), SpreadStatus.PENDING)  # then killed
    assert await desk.reconcile() == 1
    [opened] = await store.spreads([SpreadStatus.OPEN])
    assert opened.open_quantity == 75
    await store.close()


@pytest.fixture
async def kite() -> AsyncIterator[FakeKite]:
    async with FakeKite() as server:
        server.add_instrument(CALL_MAIN, "2025-03-13", 22650, "CE")
        server.add_instrument(CALL_HEDGE, "2025-03-13", 22850, "CE")
        server.set_quote(f"NFO:{CALL_MAIN}", "41.00", "41.50")
        server.set_quote(f"NFO:{CALL_HEDGE}", "9.10", "9.40")
        yield server


def kite_broker(kite: FakeKite, clock: SteppingClock) -> KiteBroker:
    """A Kite broker on the fake server, on the test's clock, at the tests' own pace (no session yet)."""
    settings = KiteSettings(API_KEY, SecretStr(API_SECRET), base_url=kite.base_url, timeout_s=1.0)
    client = KiteClient(settings, limiter=RateLimiter(dict.fromkeys(RateClass, 1000.0)))
    return KiteBroker(client, {}, poll_interval_s=0.01, now=clock.now)


async def test_through_kite_the_live_contracts_trade_and_a_refused_main_leg_rolls_the_hedge_back(
    tmp_path: Path, kite: FakeKite
) -> None:
    clock, chat = SteppingClock(S3_SIGNAL), Chat()
    broker = kite_broker(kite, clock)
    await broker.login(kite.issue_request_token())
    store = await SqliteStore.open(tmp_path / "bot.db")
    provider = CsvProvider(require_market_dir())
    desk = ZoneDesk(store, provider, broker, broker, chat, clock, NIFTY, market_calendar("XNSE"), ZoneConfig())
    await desk.run()
    [offer] = await store.spreads([SpreadStatus.PENDING])
    assert (offer.plan.main_symbol, offer.plan.hedge_symbol, offer.plan.lot) == (CALL_MAIN, CALL_HEDGE, 75)
    kite.refuse[CALL_MAIN] = "Insufficient funds. Required margin is 95417.84 but available margin is 74251.80"
    outcome = await desk.approve(offer.spread_id, 42)
    assert outcome.kind is OutcomeKind.REFUSED and "the hedge was sold back" in outcome.message
    [rolled] = await store.spreads([SpreadStatus.ROLLED_BACK])
    assert [(o["tag"][-3:], o["transaction_type"], o["status"]) for o in kite.orders] == [
        ("ho1", "BUY", "COMPLETE"),
        ("mo1", "SELL", "REJECTED"),
        ("hr1", "SELL", "COMPLETE"),
    ]
    assert "Insufficient funds" in (rolled.reason or "") and chat.stages()[-1] is SpreadStage.ROLLED_BACK
    assert all(p["quantity"] == 0 for p in kite.positions)
    await store.close()
    await broker.client.aclose()


async def test_a_spread_the_account_cannot_margin_is_refused_before_any_leg_is_sent(
    tmp_path: Path, kite: FakeKite
) -> None:
    clock, chat = SteppingClock(S3_SIGNAL), Chat()
    broker = kite_broker(kite, clock)
    await broker.login(kite.issue_request_token())
    store = await SqliteStore.open(tmp_path / "bot.db")
    provider = CsvProvider(require_market_dir())
    calendar = market_calendar("XNSE")
    desk = ZoneDesk(store, provider, broker, broker, chat, clock, NIFTY, calendar, ZoneConfig(), margins=broker)
    await desk.run()
    [offer] = await store.spreads([SpreadStatus.PENDING])
    kite.funds = Decimal("20000.00")  # the hedged basket needs 36,000 at the fake's rates
    outcome = await desk.approve(offer.spread_id, 42)
    assert outcome.kind is OutcomeKind.REFUSED and "needs 36,000.00 INR of margin" in outcome.message
    assert kite.orders == [] and [s.spread_id for s in await store.spreads([SpreadStatus.PENDING])] == [offer.spread_id]
    kite.funds = Decimal("500000.00")
    assert (await desk.approve(offer.spread_id, 42)).kind is OutcomeKind.DONE
    await store.close()
    await broker.client.aclose()


async def test_paper_legs_fill_at_kites_quotes_with_a_session_and_are_modelled_without(
    tmp_path: Path, kite: FakeKite
) -> None:
    clock, chat = SteppingClock(S3_SIGNAL), Chat()
    broker = kite_broker(kite, clock)
    legs = PaperOptionLegs(broker)
    store = await SqliteStore.open(tmp_path / "bot.db")
    provider = CsvProvider(require_market_dir())
    desk = ZoneDesk(store, provider, legs, legs, chat, clock, NIFTY, market_calendar("XNSE"), ZoneConfig(), market=legs)
    await desk.run()  # no session: modelled contracts
    [modelled] = await store.spreads([SpreadStatus.PENDING])
    assert modelled.plan.main_symbol == "NIFTY 2025-03-13 22650 CE"
    await desk.approve(modelled.spread_id, 42)
    [opened] = await store.spreads([SpreadStatus.OPEN])
    assert opened.modelled and kite.orders == []
    await broker.login(kite.issue_request_token())
    assert await legs.option_contract("NIFTY", opened.expiry, 22650, OptionType.CALL) == (CALL_MAIN, 75)
    hedge = await legs.leg_fill(LegOrder("a1b2c3d4e5ho1", CALL_HEDGE, True, 75))
    main = await legs.leg_fill(LegOrder("a1b2c3d4e5mo1", CALL_MAIN, False, 75))
    assert (hedge.price, main.price, hedge.modelled, main.modelled) == (Decimal("9.40"), Decimal("41.00"), False, False)
    assert kite.orders == []  # paper: nothing is sent to Kite
    await store.close()
    await broker.client.aclose()


async def test_risk_based_lots_keep_the_spreads_maximum_loss_within_the_budget(tmp_path: Path) -> None:
    assert ZoneConfig(risk_per_spread=Decimal("50000")).lots_for(75) == 3  # 200 x 75 = 15,000 a lot
    assert ZoneConfig(risk_per_spread=Decimal("10000")).lots_for(75) == 0
    clock, chat = SteppingClock(S3_SIGNAL), Chat()
    store = await SqliteStore.open(tmp_path / "bot.db")
    legs = PaperOptionLegs()
    provider = CsvProvider(require_market_dir())
    config = ZoneConfig(risk_per_spread=Decimal("10000"))
    desk = ZoneDesk(store, provider, legs, legs, chat, clock, NIFTY, market_calendar("XNSE"), config, market=legs)
    await desk.run()
    assert await store.spreads([SpreadStatus.PENDING]) == []
    assert "one lot can lose 15,000 INR, above the 10,000 INR risk per spread" in str(chat.events[-1])
    await store.close()


async def test_legs_left_unconfirmed_by_an_outage_are_finished_by_the_minute_retry_told_once(
    tmp_path: Path, kite: FakeKite
) -> None:
    clock, chat = SteppingClock(S3_SIGNAL), Chat()
    broker = kite_broker(kite, clock)
    await broker.login(kite.issue_request_token())
    store = await SqliteStore.open(tmp_path / "bot.db")
    provider = CsvProvider(require_market_dir())
    desk = ZoneDesk(store, provider, broker, broker, chat, clock, NIFTY, market_calendar("XNSE"), ZoneConfig())
    await desk.run()
    [offer] = await store.spreads([SpreadStatus.PENDING])
    kite.inject(Route.PLACE, Fault.accept_then_fail(), Fault.unavailable())  # the hedge's answer lost; then down
    outcome = await desk.approve(offer.spread_id, 42)
    assert outcome.kind is OutcomeKind.REFUSED and "not confirmed" in outcome.message
    assert await desk.reconcile() == 1  # the main leg meets the outage: stays approved, not told again
    assert [s.status for s in await store.spreads([SpreadStatus.APPROVED])] == [SpreadStatus.APPROVED]
    assert sum("not confirmed" in str(e) for e in chat.events) == 1
    assert await desk.reconcile() == 1
    assert [s.open_quantity for s in await store.spreads([SpreadStatus.OPEN])] == [75]
    assert [o["tag"][-3:] for o in kite.orders] == ["ho1", "mo1"]  # the hedge found by its tag, never twice
    await store.close()
    await broker.client.aclose()


async def test_a_signal_seen_after_its_offer_would_have_expired_is_not_offered(tmp_path: Path) -> None:
    clock, chat = SteppingClock(S3_SIGNAL + timedelta(hours=1)), Chat()  # the feed is an hour late
    desk, store = await paper_desk(tmp_path, clock, chat)
    desk.provider = LateFeed(desk.provider, S3_SIGNAL)  # type: ignore[assignment]
    await desk.run()
    assert await store.spreads([SpreadStatus.PENDING, SpreadStatus.EXPIRED]) == [] and chat.events == []
    await store.close()


class LateFeed:
    """The shared CSV provider, serving only the bars closed by `until` whatever is asked."""

    def __init__(self, inner: CsvProvider, until: datetime) -> None:
        self.inner, self.until = inner, until

    def fetch(self, instrument: object, end: datetime, bars: int) -> object:
        return self.inner.fetch(instrument, min(end, self.until), bars)  # type: ignore[arg-type]
