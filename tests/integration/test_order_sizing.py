"""Signals sized in the account's currency, child orders above the freeze quantity, unconfirmed orders settled.

Real data, a real SQLite file and the real paper broker behind a fake at the broker port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bot.bootstrap import desk_policy
from bot.brokers.children import ChildOrderBroker, child_ids
from bot.config import load_settings
from bot.services.book import ClosedBooks, book_view
from bot.services.configure import backtest_config
from bot.services.desk import OutcomeKind
from bot.services.rates import Rate, RateBook, RateSource, needed_pairs
from bot.telegram.messages import exposure_line, report_text
from data.market.csv_provider import CsvProvider, write_bar_csv
from data.outbox import OutboxKind
from engine.bars import Bars
from engine.calendars import SessionCalendar
from engine.catalog import default_instrument
from engine.domain import Instrument, Interval, QualityScore, ScoredSetup, Setup, Side, SignalStatus
from engine.exposure import ExposureLimits
from engine.performance import summarize
from engine.ports import BrokerError, BrokerErrorKind, SignalRecord
from engine.protections import BookView, ProtectionConfig
from engine.sizing import SizeLimits
from engine.trading import ExecutionMode, ExitReason, Fill, OrderRequest, Trade, TradeKind, trade_from_setup
from tests.fakes.broker import PinnedQuoteBroker
from tests.integration.test_closed_books import insert
from tests.integration.test_desk import TRADER, Desk, build

EURUSD = default_instrument("EURUSD")
USDJPY = replace(EURUSD, symbol="USDJPY", ticker="USDJPY=X", tick_size=D("0.001"), pip_size=D("0.01"))
RELIANCE = default_instrument("RELIANCE")
XAUUSD = default_instrument("XAUUSD")
T0 = datetime(2025, 6, 12, 9, tzinfo=UTC)


class ScriptedBroker(PinnedQuoteBroker):
    """The pinned paper broker whose n-th new order can be refused or left unanswered, and whose fills step up."""

    def __init__(self, inner: PinnedQuoteBroker) -> None:
        super().__init__(inner.paper)
        self.refuse: dict[int, BrokerError] = {}  # by the number of the order placed (1-based, repeats excluded)
        self.step = D(0)  # each new order fills this much above the previous one
        self._filled: dict[str, Fill] = {}

    async def place_order(self, instrument: Instrument, request: OrderRequest) -> Fill:
        self.orders.append(request)
        if request.client_order_id in self._filled:
            return self._filled[request.client_order_id]
        error = self.refuse.pop(len(self._filled) + 1, None)
        if error is not None:
            raise error
        fill = await self.paper.place_order(instrument, request)
        fill = replace(fill, price=fill.price + self.step * len(self._filled))
        self._filled[request.client_order_id] = fill
        return fill

    def sent(self) -> list[str]:
        """Client ids that reached the broker, each once however often it was sent."""
        return list(self._filled)


def scored(symbol: str, side: Side, entry: str, stop: str, target: str) -> ScoredSetup:
    instrument = USDJPY if symbol == "USDJPY" else default_instrument(symbol)
    setup = Setup("trend_pullback", symbol, side, D(entry), D(stop), (D(target),), T0, instrument.interval, ("test",))
    return ScoredSetup(setup, QualityScore(70.0, ()))


async def offered(d: Desk, symbol: str) -> str:
    """Offer the run's signals; the id of the one on `symbol`."""
    for signal_id in await d.offer():
        record = await d.store.signal(signal_id)
        if record is not None and record.scored.setup.symbol == symbol:
            return signal_id
    raise AssertionError(f"no {symbol} signal offered")


async def offered_record(d: Desk, symbol: str) -> SignalRecord:
    record = await d.store.signal(await offered(d, symbol))
    assert record is not None
    return record


async def offered_pair(d: Desk) -> tuple[str, str]:
    """Offer the run's signals: the GBPUSD and XAUUSD ones."""
    by_symbol = {}
    for signal_id in await d.offer():
        record = await d.store.signal(signal_id)
        assert record is not None
        by_symbol[record.scored.setup.symbol] = signal_id
    return by_symbol["GBPUSD"], by_symbol["XAUUSD"]


@pytest.fixture
async def d(tmp_path: Path) -> AsyncIterator[Desk]:
    async for built in build(tmp_path):
        yield built


def test_the_pairs_a_watchlist_needs_for_a_usd_account() -> None:
    pairs = needed_pairs([EURUSD, USDJPY, RELIANCE, XAUUSD], "USD")
    assert pairs == {"RELIANCE": "INRUSD"}  # USDJPY converts at its own price; EURUSD and gold are in dollars
    assert needed_pairs([EURUSD, XAUUSD], "EUR") == {"XAUUSD": "USDEUR"}


async def test_sizes_are_in_the_account_currency_and_say_what_is_missing(d: Desk) -> None:
    d.desk.instruments.update({"USDJPY": USDJPY, "RELIANCE": RELIANCE})
    # USDJPY: 0.500 JPY x 100,000 = 50,000 JPY per lot = $333.33 at 150.000, and the round trip's expected costs
    # (2 bps of 150.000 + 149.500 = 0.05990 JPY, plus the spread) = $40.00 a lot: $100 holds 0.26 lots.
    jpy = d.desk.size(scored("USDJPY", Side.LONG, "150.000", "149.500", "151.000").setup, D(10000))
    assert not isinstance(jpy, str) and jpy.quantity == D("0.26")
    assert (jpy.risk_money, jpy.costs, jpy.risk_with_costs) == (D("86.67"), D("10.40"), D("97.07"))
    # RELIANCE in a USD account needs an INR rate: none known -> the signal cannot be sized, and says why.
    reliance = scored("RELIANCE", Side.LONG, "2900.00", "2880.00", "2950.00").setup
    missing = d.desk.size(reliance, D(10000))
    assert isinstance(missing, str) and "INRUSD or USDINR" in missing and "[bot.fx_rates]" in missing
    # With USDINR 84 configured: 20 INR a share = $0.238 plus 1.206 INR of expected costs (0.05 spread, 2 bps of
    # 2900 + 2880); $100 would buy 396 shares ($13,671), but shares are bought outright: the 1x cap of a $10,000
    # account holds 289 ($9,977.38), risking $68.81 and $4.15 of costs.
    d.desk.rates = RateBook({"RELIANCE": "INRUSD"}, None, {"USDINR": D("84")})
    sized = d.desk.size(reliance, D(10000))
    assert not isinstance(sized, str) and sized.quantity == D(289)
    assert (sized.risk_money, sized.costs, sized.notional, sized.leverage) == (
        D("68.81"),
        D("4.15"),
        D("9977.38"),
        D("1.00"),
    )
    assert sized.notes == ("capped at the 1x notional cap of cash equity positions (10,000.00)",)


async def test_a_eur_account_converts_gold_with_the_watchlists_eurusd(tmp_path: Path) -> None:
    async for d in build(tmp_path, account_currency="EUR"):
        d.desk.rates = RateBook({"XAUUSD": "USDEUR"}, None)
        gold = scored("XAUUSD", Side.LONG, "2000.00", "1990.00", "2030.00").setup
        assert isinstance(d.desk.size(gold, D(10000)), str)
        n = 3
        times = (np.arange(n, dtype=np.int64) + 1) * 3_600_000_000_000
        closes = np.array([1.09, 1.095, 1.10])
        bars = Bars(EURUSD.interval, times, closes, closes, closes, closes, np.zeros(n))
        d.desk.rates.update_from_bars({"EURUSD": bars})
        # $10 x 100 oz = $1,000 per lot = EUR 909.09 at 1.10, plus EUR 95.27 of expected costs a lot (0.25 spread,
        # 2 bps of 2000 + 1990): EUR 100 buys 0.09 lots.
        sized = d.desk.size(gold, D(10000))
        assert not isinstance(sized, str) and sized.quantity == D("0.09")
        assert (sized.risk_money, sized.costs) == (D("81.82"), D("8.57"))
        rate = d.desk.rates.rate("USDEUR")
        assert rate is not None and rate.source is RateSource.WATCHLIST and rate.symbol == "EURUSD"


async def test_rates_come_from_the_feed_then_the_configuration(tmp_path: Path) -> None:
    folder = tmp_path / "market"
    folder.mkdir()
    index = pd.date_range("2025-06-12 06:00", periods=3, freq="1h", tz="UTC", name="timestamp")
    frame = pd.DataFrame({c: [83.9, 84.0, 84.2] for c in ("open", "high", "low", "close")}, index=index)
    frame["volume"] = 0.0
    write_bar_csv(frame, folder / "USDINR_1h.csv")
    book = RateBook({"RELIANCE": "INRUSD"}, CsvProvider(folder), {"USDINR": D("80")})
    assert book.rate("INRUSD") == Rate("USDINR", D("80"), RateSource.CONFIGURED, None)
    await book.refresh(datetime(2025, 6, 12, 9, 30, tzinfo=UTC))
    rate = book.rate("INRUSD")
    assert rate is not None and rate.source is RateSource.FEED and rate.price == D("84.2")
    assert rate.describe() == "USDINR 84.2 (feed at 2025-06-12 08:00Z)"
    empty = RateBook({"RELIANCE": "INRUSD"}, CsvProvider(tmp_path), {})
    await empty.refresh(datetime(2025, 6, 12, 9, 30, tzinfo=UTC))
    assert empty.missing() == ["INRUSD"]


async def test_an_order_over_the_freeze_quantity_goes_out_as_children_and_fills_as_one_trade(tmp_path: Path) -> None:
    limits = {"GBPUSD": SizeLimits(freeze_quantity=D("0.10")), "XAUUSD": SizeLimits(freeze_quantity=D("0.02"))}
    async for d in build(tmp_path, limits=limits):
        broker = ScriptedBroker(d.broker)
        broker.step = D("0.00010")
        d.desk.broker = ChildOrderBroker(broker, {s: x.freeze_quantity for s, x in limits.items()})
        gbp = await offered(d, "GBPUSD")
        record = await d.store.signal(gbp)
        assert record is not None and record.quantity is not None and record.quantity > D("0.10")
        outcome = await d.desk.approve(gbp, TRADER)
        assert outcome.kind is OutcomeKind.DONE
        sizes = [o.quantity for o in broker.orders]
        assert sum(sizes) == record.quantity and max(sizes) <= D("0.10")
        assert [o.client_order_id for o in broker.orders] == child_ids(gbp, len(sizes))
        (trade,) = await d.store.open_trades([TradeKind.PAPER])
        fills = [broker._filled[c] for c in broker.sent()]
        vwap = sum((f.quantity * f.price for f in fills), D(0)) / record.quantity
        assert trade.quantity == record.quantity and trade.entry_price == vwap
        assert trade.entry_fees == sum((f.fees for f in fills), D(0))


async def test_a_child_refused_after_others_filled_records_what_was_bought(tmp_path: Path) -> None:
    limits = {"GBPUSD": SizeLimits(freeze_quantity=D("0.10"))}
    async for d in build(tmp_path, limits=limits):
        broker = ScriptedBroker(d.broker)
        broker.refuse[2] = BrokerError("insufficient margin")
        d.desk.broker = ChildOrderBroker(broker, {"GBPUSD": D("0.10")})
        gbp = await offered(d, "GBPUSD")
        outcome = await d.desk.approve(gbp, TRADER)
        record = await d.store.signal(gbp)
        assert record is not None and record.quantity is not None
        assert outcome.kind is OutcomeKind.DONE and f"Filled 0.10 of {record.quantity} asked" in outcome.message
        (trade,) = await d.store.open_trades([TradeKind.PAPER])
        assert trade.quantity == D("0.10") and broker.sent() == [gbp]


async def test_an_order_nobody_confirmed_stays_unconfirmed_and_is_settled_once(d: Desk) -> None:
    broker = ScriptedBroker(d.broker)
    broker.refuse[1] = BrokerError("timed out after 3 attempts", BrokerErrorKind.TRANSIENT)
    d.desk.broker = broker
    signal_id, _ = await d.offer()
    outcome = await d.desk.approve(signal_id, TRADER)
    assert outcome.kind is OutcomeKind.REFUSED and "unconfirmed" in outcome.message
    assert await d.status(signal_id) is SignalStatus.ORDER_SUBMITTED  # not failed: it may be at the broker
    texts = [str(m["text"]) for m in await d.outbox(OutboxKind.TEXT)]
    assert any("unconfirmed" in t and "never sent twice" in t for t in texts)
    assert await d.desk.settle_unconfirmed() == 1  # the broker never got it: sent now, once
    assert await d.status(signal_id) is SignalStatus.FILLED and broker.sent() == [signal_id]
    assert await d.desk.settle_unconfirmed() == 0


async def test_a_split_order_left_half_sent_by_a_crash_sends_only_the_missing_children(tmp_path: Path) -> None:
    limits = {"GBPUSD": SizeLimits(freeze_quantity=D("0.10"))}
    async for d in build(tmp_path, limits=limits):
        broker = ScriptedBroker(d.broker)
        d.desk.broker = ChildOrderBroker(broker, {"GBPUSD": D("0.10")})
        gbp = await offered(d, "GBPUSD")
        record = await d.store.signal(gbp)
        assert record is not None and record.quantity is not None
        setup = record.scored.setup
        request = OrderRequest(gbp, "GBPUSD", setup.side, record.quantity, stop=setup.stop, target=setup.target)
        assert await d.store.approve_order(gbp, SignalStatus.PENDING, request, d.clock.now(), by=TRADER)
        first = replace(request, client_order_id=gbp, quantity=D("0.10"))
        await broker.place_order(d.desk.instruments["GBPUSD"], first)  # the crash came after the first child
        assert await d.desk.reconcile() == 1
        ids = child_ids(gbp, len(broker.sent()))
        assert broker.sent() == ids and len(ids) > 1  # each child reached the broker once
        (trade,) = await d.store.open_trades([TradeKind.PAPER])
        assert trade.quantity == record.quantity


def closed_long(
    trade_id: str,
    kind: TradeKind,
    symbol: str,
    quantity: D,
    levels: tuple[str, str, str],
    exit_price: str,
    reason: ExitReason,
    hours: int,
) -> Trade:
    """A long entered 2025-06-11 09:00 UTC at `levels` (entry, stop, target), closed `hours` later, no fees."""
    instrument = USDJPY if symbol == "USDJPY" else default_instrument(symbol)
    entry = datetime(2025, 6, 11, 9, tzinfo=UTC)
    entry_price, stop, target = (D(x) for x in levels)
    opened = Trade(
        trade_id,
        f"s-{trade_id}",
        kind,
        "trend_pullback",
        symbol,
        Side.LONG,
        quantity,
        instrument.contract_size,
        entry,
        entry_price,
        stop,
        target,
        D(0),
    )
    return opened.closed(entry + timedelta(hours=hours), D(exit_price), reason, D(0))


async def test_protections_add_up_losses_in_the_account_currency(d: Desk) -> None:
    d.desk.instruments["USDJPY"] = USDJPY
    trade = closed_long(
        "t1", TradeKind.PAPER, "USDJPY", D("1.00"), ("150.000", "149.000", "152.000"), "149.000", ExitReason.STOP, 1
    )
    # A 1.000 JPY loss on 100,000 units is JPY 100,000 = $671.14 at the 149.000 exit, not 100,000 dollars.
    assert trade.pnl == D("-100000.000") and d.desk.account_pnl(trade) == D("-671.14")


async def test_no_entry_is_offered_or_approved_in_the_last_minutes_before_a_close(d: Desk) -> None:
    # A market that closes at 09:50 UTC into a closed night, no entries in its last 15 minutes: at 09:40 the
    # desk drops a new signal and refuses a click on a pending one, which stays pending for after the rule.
    closing = SessionCalendar(
        "TEST", "UTC", timedelta(0), timedelta(hours=9, minutes=50), entry_cutoff=timedelta(minutes=15)
    )
    d.desk.calendars = {"XAUUSD": closing}
    decisions = {(await d.store.signal(s)).scored.setup.symbol: s for s in await d.offer()}  # type: ignore[union-attr]
    dropped = await d.store.signal(decisions["XAUUSD"])
    assert dropped is not None and dropped.status is SignalStatus.DROPPED
    assert dropped.reason == "no new entries in the last 15 min before the TEST close at 09:50 UTC"
    d.desk.calendars = {"GBPUSD": closing}
    outcome = await d.desk.approve(decisions["GBPUSD"], TRADER)
    assert outcome.kind is OutcomeKind.REFUSED and "last 15 min before the TEST close" in outcome.message
    assert await d.status(decisions["GBPUSD"]) is SignalStatus.PENDING


async def test_the_report_adds_up_money_in_the_account_currency(d: Desk) -> None:
    d.desk.instruments["USDJPY"] = USDJPY
    yen = closed_long(
        "t1", TradeKind.LIVE, "USDJPY", D("1.00"), ("150.000", "149.000", "152.000"), "152.000", ExitReason.TARGET, 1
    )
    dollars = closed_long(
        "t2", TradeKind.PAPER, "GBPUSD", D("0.10"), ("1.25000", "1.24800", "1.25400"), "1.25400", ExitReason.TARGET, 2
    )
    # JPY 200,000 at 152.000 = $1,315.79, plus $40.00: the sum is money, not yen plus dollars.
    summary = summarize([yen, dollars], d.desk.account_pnl)
    assert summary.net_pnl == D("1355.79") and summary.net_pnl_by_symbol["USDJPY"] == D("1315.79")
    assert "net 1,355.79 USD" in report_text(summary, {}, summarize([]), "USD")


async def test_the_minutes_settlement_never_sends_an_order_the_desk_is_sending(d: Desk) -> None:
    broker = ScriptedBroker(d.broker)
    d.desk.broker = broker
    await d.state.set_mode(ExecutionMode.AUTO)
    await d.validate("GBPUSD", "XAUUSD")
    offering = asyncio.ensure_future(d.offer())
    settled = 0
    while not offering.done():  # a settlement at every point where the offer waits, as the minute's tick may
        settled += await d.desk.settle_unconfirmed()
        await asyncio.sleep(0)
    placed = await offering
    assert settled == 0 and len(placed) == 2
    assert sorted(o.client_order_id for o in broker.orders) == sorted(placed)  # one send each, no second one


async def test_the_backtest_sizes_a_setup_exactly_as_the_desk_does(tmp_path: Path) -> None:
    # Formerly the same RELIANCE levels gave 10 shares in a backtest (INR 10,000 of quote money) and 840 at the
    # desk (a USD account at USDINR 84): both now take their sizing from the one configuration.
    settings = load_settings({}, db_path=tmp_path / "bot.db", bot={"fx_rates": {"USDINR": "84"}})
    setup = scored("RELIANCE", Side.LONG, "1250.00", "1240.00", "1280.00").setup
    desk = desk_policy(settings)
    config = backtest_config(settings)
    prices = config.rates.prices_at(T0)
    at_desk = desk.sizing.size(RELIANCE, setup.entry, setup.stop, desk.equity, prices)
    in_backtest = config.sizing.size(RELIANCE, setup.entry, setup.stop, config.equity, prices)
    assert at_desk == in_backtest
    # $100 to the stop would be 840 shares ($12,500); a cash account holds at most its equity: 672 shares.
    assert not isinstance(at_desk, str) and at_desk.quantity == D(672) and at_desk.risk_money == D("80.00")


async def test_a_share_position_holds_at_most_the_equity_and_says_so(d: Desk) -> None:
    # SPY short from 600.55 with a 36-cent stop: $100 of risk would be 230 shares ($138,126, 13.8x equity); shares
    # are bought outright, so the 1x cap holds it at 16 shares ($9,608.80), and the signal says what held it.
    d.desk.instruments["SPY"] = default_instrument("SPY")
    setup = Setup("trend_pullback", "SPY", Side.SHORT, D("600.55"), D("600.91"), (D("599.83"),), T0, Interval.M5, ())
    sized = d.desk.size(setup, D(10000))
    assert not isinstance(sized, str)
    assert (sized.quantity, sized.notional, sized.leverage) == (D(16), D("9608.80"), D("0.96"))
    assert sized.notes == ("capped at the 1x notional cap of cash equity positions (10,000.00)",)
    # Risk and costs of what is held: 16 x 0.36 = $5.76 to the stop; 16 x (0.01 spread + 2 bps of 1,201.46).
    assert (sized.risk_money, sized.costs) == (D("5.76"), D("4.00"))
    line = exposure_line(
        replace(await offered_record(d, "GBPUSD"), sizing=sized.summary("USD")), default_instrument("SPY")
    )
    assert line == (
        "notional 9,608.80 USD (0.96x equity) · risk <b>9.76</b> USD incl. 4.00 expected costs · "
        "capped at the 1x notional cap of cash equity positions (10,000.00)"
    )


async def test_all_open_positions_together_stay_under_the_total_cap(d: Desk) -> None:
    gbp, gold = await offered_pair(d)
    first, second = await d.store.signal(gbp), await d.store.signal(gold)
    assert first is not None and second is not None and first.sizing is not None and second.sizing is not None
    # A total cap just above the first position: it fills, and the second, sized before the first was taken, is
    # refused at the click because both together would pass it.
    cap = first.sizing.leverage + D("0.5")
    total = ExposureLimits(max_total_leverage=cap)
    d.desk.policy = replace(d.desk.policy, sizing=replace(d.desk.policy.sizing, exposure=total))
    assert (await d.desk.approve(gbp, TRADER)).kind is OutcomeKind.DONE
    refused = await d.desk.approve(gold, TRADER)
    assert refused.kind is OutcomeKind.REFUSED
    assert refused.message.startswith("Refused: all open positions would hold ") and f"above the {cap:g}x cap" in (
        refused.message
    )
    assert await d.status(gold) is SignalStatus.PENDING
    # Sizing with the open book counts what is held: the room left is what the next position may take.
    [held] = await d.store.open_trades()
    room = d.desk.size(second.scored.setup, D(10000), [held])
    assert not isinstance(room, str) and room.notional <= D(10000) * cap - d.desk.open_notional([held])
    assert any("cap on all open positions" in n for n in room.notes)


async def unfolded(d: Desk) -> BookView:
    """The desk's book read straight from the store, without its kept folds."""
    p = d.desk.policy
    return await book_view(
        d.store,
        p.equity,
        d.clock.now(),
        timezone=p.day_timezone,
        rollover_hour=p.day_rollover_hour,
        to_account=d.desk.account_pnl,
    )


async def test_the_book_reads_the_closed_trades_again_only_after_a_close(d: Desk) -> None:
    gbp, gold = await offered_pair(d)
    books = d.desk.closed_books
    first = await d.desk.book(d.clock.now())
    reads = books.reads
    assert (await d.desk.approve(gbp, TRADER)).kind is OutcomeKind.DONE  # an entry: nothing closed
    for _ in range(3):
        await d.desk.book(d.clock.now())
    assert books.reads == reads and (await d.desk.book(d.clock.now())).equity == first.equity
    [trade] = await d.store.open_trades()
    assert await d.store.close_trade(trade.trade_id, d.clock.now(), D("1.36000"), ExitReason.MANUAL, D(0))
    after = await d.desk.book(d.clock.now())
    assert books.reads == reads + 1 and [t.trade_id for t in after.closed_trades] == [trade.trade_id]
    # The same view as one read straight from the store, without the cache.
    fresh = await unfolded(d)
    assert (after.equity, after.equity_peak, dict(after.account_pnl)) == (
        fresh.equity,
        fresh.equity_peak,
        dict(fresh.account_pnl),
    )
    assert after.equity != first.equity
    assert (await d.desk.approve(gold, TRADER)).kind is OutcomeKind.DONE
    await d.desk.book(d.clock.now())
    assert books.reads == reads + 1


async def test_a_moved_conversion_price_converts_again_only_the_closed_trades_that_read_it(d: Desk) -> None:
    # A USD account: RELIANCE's P&L is converted at the rate book's USDINR, GBPUSD's is in dollars already.
    d.desk.instruments["RELIANCE"] = RELIANCE
    d.desk.rates = RateBook({"RELIANCE": "INRUSD"}, None, {"USDINR": D("84")})
    closed = []
    for k in range(6):
        symbol, entry, exit_price = ("RELIANCE", "2900.00", "2910.00") if k % 2 else ("GBPUSD", "1.35000", "1.34900")
        setup = scored(symbol, Side.LONG, entry, str(D(entry) * D("0.99")), str(D(entry) * D("1.02"))).setup
        at = d.clock.now() - timedelta(hours=10 - k)
        opened = trade_from_setup(setup, TradeKind.PAPER, D(10), D(1), at, D(entry), D(0))
        closed.append(
            replace(opened, trade_id=f"c{k}", signal_id=f"c{k}").closed(at, D(exit_price), ExitReason.MANUAL, D(0))
        )
    insert(d.store.path, *closed)
    books = d.desk.closed_books = ClosedBooks(d.store)
    first = await d.desk.book(d.clock.now())
    assert books.conversions == 6 and first.equity == d.desk.policy.equity + 3 * D("1.19") - D("0.03")  # 100/84
    # A move of a price no closed trade's conversion reads (the bot's GBPUSD): nothing converted again.
    d.desk.rates = RateBook({"RELIANCE": "INRUSD", "XAUUSD": "GBPUSD"}, None, {"USDINR": D("84"), "GBPUSD": D(2)})
    assert (await d.desk.book(d.clock.now())).equity == first.equity and books.conversions == 6
    d.desk.rates = RateBook({"RELIANCE": "INRUSD"}, None, {"USDINR": D("100")})  # the next USDINR: its 3 trades
    moved = await d.desk.book(d.clock.now())
    assert books.conversions == 9 and books.reads == 6
    fresh = await unfolded(d)
    assert (moved.equity, moved.equity_peak, dict(moved.account_pnl)) == (
        fresh.equity,
        fresh.equity_peak,
        dict(fresh.account_pnl),
    )
    assert moved.equity == d.desk.policy.equity + D("3.00") - D("0.03")


async def test_warming_at_start_folds_the_closed_book_so_the_first_click_reads_nothing(d: Desk) -> None:
    gbp, _ = await offered_pair(d)
    assert (await d.desk.approve(gbp, TRADER)).kind is OutcomeKind.DONE
    [trade] = await d.store.open_trades()
    assert await d.store.close_trade(trade.trade_id, d.clock.now(), D("1.36000"), ExitReason.MANUAL, D(0))
    d.desk.closed_books = books = ClosedBooks(d.store)  # as after a restart: nothing folded yet
    await d.desk.warm(d.clock.now())
    assert books.reads == 1
    view = await d.desk.book(d.clock.now())  # what a click asks for: already folded, nothing read
    assert books.reads == 1 and [t.trade_id for t in view.closed_trades] == [trade.trade_id]


async def test_no_equity_left_refuses_entries_with_the_reason(d: Desk) -> None:
    gbp, gold = await offered_pair(d)
    assert (await d.desk.approve(gbp, TRADER)).kind is OutcomeKind.DONE
    # The position closes 0.45671 below its entry: 0.27 lots lose $12,334.83 with fees, of a $10,000 account.
    [trade] = await d.store.open_trades()
    assert await d.store.close_trade(trade.trade_id, d.clock.now(), D("0.90000"), ExitReason.MANUAL, D(0))
    d.desk.policy = replace(d.desk.policy, protections=ProtectionConfig(daily_loss_fraction=None))
    equity = (await d.desk.book(d.clock.now())).equity
    assert equity == D("-2334.83")
    outcome = await d.desk.approve(gold, TRADER)
    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.message == f"Refused: no equity to risk: realised equity is {equity:,.2f}."
    assert await d.status(gold) is SignalStatus.PENDING
    record = await d.store.signal(gold)
    assert record is not None
    refused = d.desk.size(record.scored.setup, equity)
    assert refused == f"no equity to risk: realised equity is {equity:,.2f}; entries are refused until it is positive"
