"""The signal desk on real data: offering by mode, exactly-once approval, click-time checks, expiry,
shadow outcomes and position exits, with a real SQLite file and the real paper broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bot.bootstrap import open_runtime
from bot.brokers.paper import PaperBroker
from bot.config import load_settings
from bot.ops.clock import BotClock
from bot.services.desk import DeskPolicy, OutcomeKind, SignalDesk
from bot.services.monitor import PositionMonitor
from bot.services.scan import BarRules, ScanService, WatchItem
from bot.services.state import BotState
from bot.services.systems import SystemBook, system_spec
from bot.telegram.callbacks import Action, parse
from bot.telegram.notifier import Notifier
from data.market.csv_provider import CsvProvider
from data.market.news_feed import NewsSource
from data.outbox import OutboxKind
from data.sqlite.store import SqliteStore
from engine.backtest import BacktestConfig
from engine.bars import Bars, to_nanos
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.costs import CostModel
from engine.domain import Instrument, Setup, Side, SignalStatus
from engine.exits import StopTrigger, find_exit
from engine.news import EmbargoConfig, FeedFallback
from engine.pipeline import EngineConfig
from engine.protections import ProtectionConfig
from engine.routing import Account, Market
from engine.sizing import Sizing
from engine.strategy import REGISTRY, strategy_names
from engine.trading import ExecutionMode, ExitReason, OrderRequest, TradeKind, trade_from_setup
from tests.builders import baseline_for
from tests.fakes.broker import PinnedQuoteBroker
from tests.fakes.clock import SteppingClock
from tests.support import require_market_dir

AS_OF = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)  # GBPUSD (Q74) and XAUUSD (Q66) trend_pullback longs
SYMBOLS = ("GBPUSD", "XAUUSD")
CHAT = 1001
TRADER = 42


class CountingCsvProvider(CsvProvider):
    """The real CSV provider, counting fetches."""

    fetches = 0

    def fetch(self, instrument: Instrument, end: datetime, bars: int) -> pd.DataFrame:
        self.fetches += 1
        return super().fetch(instrument, end, bars)


@dataclass
class Desk:
    provider: CountingCsvProvider
    store: SqliteStore
    clock: SteppingClock
    scan: ScanService
    desk: SignalDesk
    broker: PinnedQuoteBroker
    state: BotState
    monitor: PositionMonitor

    async def offer(self) -> list[str]:
        report = await self.scan.scan()
        decisions = await self.desk.offer(report.setups)
        return [d.signal_id for d in decisions]

    async def outbox(self, kind: OutboxKind | None = None) -> list[dict[str, object]]:
        items = await self.store.due_messages(self.clock.now() + timedelta(days=3650), limit=1000)
        return [i.payload for i in items if kind is None or i.kind is kind]

    async def validate(self, *symbols: str, strategy: str = "trend_pullback", passed: bool = True) -> None:
        """Store a baseline of exactly the system the desk trades on each symbol (passed unless told otherwise)."""
        for symbol in symbols:
            spec = self.desk.systems.specs[(strategy, symbol)]
            await self.store.save_baseline(baseline_for(spec, self.clock.now() - timedelta(days=1), passed=passed))

    async def status(self, signal_id: str) -> SignalStatus:
        record = await self.store.signal(signal_id)
        assert record is not None
        return record.status


async def build(tmp_path: Path, **policy: object) -> AsyncIterator[Desk]:
    market = require_market_dir()
    store = await SqliteStore.open(tmp_path / "bot.db")
    clock = SteppingClock(AS_OF)
    provider = CountingCsvProvider(market)
    instruments = {s: default_instrument(s) for s in SYMBOLS}
    calendars = {s: get_calendar(i.calendar) for s, i in instruments.items()}
    strategies = tuple(REGISTRY[n]() for n in strategy_names())
    watch = [
        WatchItem(i, calendars[s], tuple(x for x in strategies if x.applies_to(i))) for s, i in instruments.items()
    ]
    costs = CostModel(Decimal("1"), Decimal("1"), Decimal("0"))
    broker = PinnedQuoteBroker(PaperBroker(provider, instruments, clock, costs))
    state = BotState(store, ExecutionMode.MANUAL)
    notifier = Notifier(store, [CHAT], instruments, clock)
    money: dict[str, object] = {"account_currency": "USD"} | {
        k: policy.pop(k) for k in ("account_currency", "limits", "risk_fraction") if k in policy
    }
    sizing = Sizing(**money)  # type: ignore[arg-type]
    desk = SignalDesk(
        store, broker, notifier, state, clock, instruments, DeskPolicy(costs=costs, sizing=sizing, **policy)
    )  # type: ignore[arg-type]
    monitor = PositionMonitor(
        store, provider, notifier, clock, instruments, calendars, history_bars=2000, max_hold_bars=48, costs=costs
    )
    engine = EngineConfig(min_score=50)
    scan = ScanService(provider, store, watch, engine, BarRules(), clock)
    config = BacktestConfig(costs=costs, max_hold_bars=48)
    desk.systems = SystemBook(
        system_spec(s, w.instrument, w.calendar, engine, config) for w in watch for s in w.strategies
    )
    try:
        yield Desk(provider, store, clock, scan, desk, broker, state, monitor)
    finally:
        await store.close()


@pytest.fixture
async def d(tmp_path: Path) -> AsyncIterator[Desk]:
    async for built in build(tmp_path):
        yield built


async def test_manual_mode_asks_with_buttons_and_never_signals_the_same_setup_twice(d: Desk) -> None:
    offered = await d.offer()
    assert len(offered) == 2
    for signal_id in offered:
        record = await d.store.signal(signal_id)
        assert record is not None and record.status is SignalStatus.PENDING
        assert record.quantity is not None and record.quantity > 0
        bar_close = record.scored.setup.bar_time + timedelta(hours=1)
        assert record.expires_at == bar_close + timedelta(hours=2)  # TTL: 2 bars of the timeframe
    messages = await d.outbox(OutboxKind.SIGNAL)
    assert [m["signal_ids"] for m in messages] == [[offered[0]], [offered[1]]]  # best first, one message each
    first = messages[0]
    ((approve, reject),) = first["buttons"]  # type: ignore[misc]
    assert parse(approve[1]) is not None and parse(approve[1]).action is Action.APPROVE  # type: ignore[union-attr]
    assert parse(reject[1]).signal_id == offered[0]  # type: ignore[union-attr]
    assert "GBPUSD" in str(first["text"]) and "quality <b>74</b>" in str(first["text"])

    d.clock.advance(timedelta(minutes=5))
    assert await d.offer() == []  # the next run sees the same setups: nothing new
    assert len(await d.outbox(OutboxKind.SIGNAL)) == 2


async def test_approve_places_exactly_one_order_even_when_clicked_twenty_times(d: Desk) -> None:
    signal_id, _ = await d.offer()
    outcomes = await asyncio.gather(*(d.desk.approve(signal_id, TRADER) for _ in range(20)))
    assert [o.kind for o in outcomes].count(OutcomeKind.DONE) == 1
    assert len(d.broker.orders) == 1
    assert await d.status(signal_id) is SignalStatus.FILLED
    (trade,) = await d.store.open_trades([TradeKind.PAPER])
    record = await d.store.signal(signal_id)
    assert record is not None and trade.quantity == record.quantity and trade.approver_id == TRADER
    assert trade.entry_time == AS_OF and trade.approval_latency_s == 0.0
    texts = [str(m["text"]) for m in await d.outbox(OutboxKind.TEXT)]
    assert any("filled" in t and signal_id in t for t in texts)


async def test_approval_is_refused_after_expiry_and_the_signal_is_tracked_as_a_shadow(d: Desk) -> None:
    signal_id, _ = await d.offer()
    d.clock.advance(timedelta(hours=2))  # the GBPUSD bar closed 09:00; the signal expires at 11:00
    outcome = await d.desk.approve(signal_id, TRADER)
    assert outcome.kind is OutcomeKind.INVALID and "expired" in outcome.message
    assert await d.status(signal_id) is SignalStatus.EXPIRED
    assert d.broker.orders == []
    (shadow,) = await d.store.open_trades([TradeKind.SHADOW])
    assert shadow.signal_id == signal_id


async def test_expiry_job_expires_due_signals_only(d: Desk) -> None:
    first, second = await d.offer()
    assert await d.desk.expire_due() == 0
    d.clock.advance(timedelta(hours=1, minutes=20))
    assert await d.desk.expire_due() == 2  # both bars closed at 09:00: both expire at 11:00
    assert {await d.status(first), await d.status(second)} == {SignalStatus.EXPIRED}


async def test_a_price_that_drifted_is_refused_with_both_prices_and_the_signal_stays_pending(d: Desk) -> None:
    signal_id, _ = await d.offer()
    record = await d.store.signal(signal_id)
    assert record is not None
    setup = record.scored.setup
    d.broker.prices[setup.symbol] = setup.entry + setup.risk * Decimal("0.3")
    outcome = await d.desk.approve(signal_id, TRADER)
    assert outcome.kind is OutcomeKind.REFUSED
    assert f"price moved from {setup.entry} to {setup.entry + setup.risk * Decimal('0.3')}" in outcome.message
    assert "(0.30R > 0.25R)" in outcome.message
    assert await d.status(signal_id) is SignalStatus.PENDING
    d.broker.prices[setup.symbol] = setup.entry + setup.risk * Decimal("0.2")
    assert (await d.desk.approve(signal_id, TRADER)).kind is OutcomeKind.DONE


async def test_a_price_past_the_stop_expires_the_signal(d: Desk) -> None:
    signal_id, _ = await d.offer()
    record = await d.store.signal(signal_id)
    assert record is not None
    d.broker.prices[record.scored.setup.symbol] = record.scored.setup.stop
    outcome = await d.desk.approve(signal_id, TRADER)
    assert outcome.kind is OutcomeKind.INVALID and "already crossed the stop" in outcome.message
    assert await d.status(signal_id) is SignalStatus.EXPIRED


async def test_paused_bot_refuses_approvals_and_keeps_the_signal(d: Desk) -> None:
    signal_id, _ = await d.offer()
    await d.state.set_paused(True)
    outcome = await d.desk.approve(signal_id, TRADER)
    assert outcome.kind is OutcomeKind.REFUSED and "paused" in outcome.message
    assert await d.status(signal_id) is SignalStatus.PENDING and d.broker.orders == []
    await d.state.set_paused(False)
    assert (await d.desk.approve(signal_id, TRADER)).kind is OutcomeKind.DONE


async def test_a_paused_bot_drops_new_signals_with_the_reason(d: Desk) -> None:
    await d.state.set_paused(True)
    report = await d.scan.scan()
    decisions = await d.desk.offer(report.setups)
    assert {(x.status, x.reason) for x in decisions} == {(SignalStatus.DROPPED, "bot paused (/resume)")}
    assert await d.outbox(OutboxKind.SIGNAL) == []


async def test_reject_records_who_and_tracks_the_shadow_outcome_to_its_exit(d: Desk) -> None:
    signal_id, _ = await d.offer()
    assert (await d.desk.reject(signal_id, TRADER)).kind is OutcomeKind.DONE
    record = await d.store.signal(signal_id)
    assert record is not None and record.status is SignalStatus.REJECTED and record.decided_by == TRADER
    assert (await d.desk.approve(signal_id, TRADER)).kind is OutcomeKind.INVALID
    d.clock.advance(timedelta(days=5))
    closed = await d.monitor.check()
    shadow = next(t for t in closed if t.signal_id == signal_id)
    assert shadow.kind is TradeKind.SHADOW and shadow.exit_reason in set(ExitReason)
    assert shadow.pnl_r is not None
    assert not any(signal_id in str(m["text"]) and "closed" in str(m["text"]) for m in await d.outbox(OutboxKind.TEXT))


async def test_paper_position_exits_and_the_chat_is_told_the_pnl(d: Desk) -> None:
    signal_id, _ = await d.offer()
    await d.desk.approve(signal_id, TRADER)
    assert await d.monitor.check() == []  # nothing has happened yet
    d.clock.advance(timedelta(days=5))
    (closed,) = [t for t in await d.monitor.check() if t.kind is TradeKind.PAPER]
    assert closed.exit_reason in {ExitReason.STOP, ExitReason.TARGET, ExitReason.TIME}
    assert closed.exit_time is not None and closed.exit_time > closed.entry_time
    assert (
        closed.pnl
        == (closed.exit_price - closed.entry_price) * closed.side.sign * closed.quantity * closed.contract_size
        - closed.fees
    )  # type: ignore[operator]
    assert await d.store.open_trades([TradeKind.PAPER]) == []
    assert any("closed" in str(m["text"]) and "P&amp;L" in str(m["text"]) for m in await d.outbox(OutboxKind.TEXT))


async def test_broker_refusal_fails_the_signal_and_says_why(d: Desk) -> None:
    signal_id, _ = await d.offer()
    d.broker.fail_with = "market closed"
    outcome = await d.desk.approve(signal_id, TRADER)
    assert outcome.kind is OutcomeKind.REFUSED and "market closed" in outcome.message
    record = await d.store.signal(signal_id)
    assert record is not None and record.status is SignalStatus.FAILED and "market closed" in (record.reason or "")


@pytest.mark.parametrize(
    ("mode", "auto", "ask", "expected"),
    [
        (ExecutionMode.QUALITY, 70.0, 60.0, {"GBPUSD": SignalStatus.FILLED, "XAUUSD": SignalStatus.PENDING}),
        (ExecutionMode.QUALITY, 80.0, 70.0, {"GBPUSD": SignalStatus.PENDING, "XAUUSD": SignalStatus.DROPPED}),
        (ExecutionMode.AUTO, 80.0, 60.0, {"GBPUSD": SignalStatus.FILLED, "XAUUSD": SignalStatus.FILLED}),
    ],
)
async def test_execution_modes(
    tmp_path: Path, mode: ExecutionMode, auto: float, ask: float, expected: dict[str, SignalStatus]
) -> None:
    async for d in build(tmp_path, auto_threshold=auto, ask_threshold=ask):
        await d.state.set_mode(mode)
        await d.validate("GBPUSD", "XAUUSD")
        report = await d.scan.scan()
        decisions = await d.desk.offer(report.setups)
        got = {x.symbol: await d.status(x.signal_id) for x in decisions}
        assert got == expected
        dropped = [x for x in decisions if x.status is SignalStatus.DROPPED]
        assert all("below ask threshold 70" in x.reason for x in dropped)


async def test_many_signals_go_out_as_one_digest_best_first(tmp_path: Path) -> None:
    async for d in build(tmp_path, digest_threshold=1):
        offered = await d.offer()
        (digest,) = await d.outbox(OutboxKind.SIGNAL)
        assert digest["signal_ids"] == offered
        assert len(digest["buttons"]) == 2  # type: ignore[arg-type]
        assert "2 signals" in str(digest["text"])


async def test_per_run_cap_and_cooldown_drop_with_reasons(tmp_path: Path) -> None:
    async for d in build(tmp_path, max_signals_per_run=1):
        report = await d.scan.scan()
        decisions = await d.desk.offer(report.setups)
        assert [x.status for x in decisions] == [SignalStatus.PENDING, SignalStatus.DROPPED]
        assert decisions[1].reason == "more than 1 signals in one run"

        scored = report.setups[0]
        later = replace(scored, setup=replace(scored.setup, bar_time=scored.setup.bar_time + timedelta(hours=1)))
        run = await d.store.start_run(d.clock.now(), d.clock.now(), "test", [later.setup.symbol])
        await d.store.finish_run(run, d.clock.now(), [later], [], [])
        d.clock.advance(timedelta(minutes=30))
        (cooled,) = await d.desk.offer([later])
        assert cooled.status is SignalStatus.DROPPED and cooled.reason == "cooldown: GBPUSD was signalled 30 min ago"


async def test_restart_settles_half_done_signals(d: Desk) -> None:
    first, second = await d.offer()
    assert await d.store.transition(first, SignalStatus.PENDING, SignalStatus.APPROVED, d.clock.now(), by=TRADER)
    record = await d.store.signal(first)
    assert record is not None and record.quantity is not None
    setup = record.scored.setup
    await d.store.submit_order(first, OrderRequest(first, setup.symbol, setup.side, record.quantity), d.clock.now())
    assert await d.store.transition(second, SignalStatus.PENDING, SignalStatus.APPROVED, d.clock.now(), by=TRADER)

    assert await d.desk.reconcile() == 2
    assert await d.status(first) is SignalStatus.FILLED  # the submitted order was placed (once) and recorded
    assert await d.status(second) is SignalStatus.FAILED  # approved at a price that is gone: not sent
    assert len(await d.store.open_trades([TradeKind.PAPER])) == 1
    assert await d.desk.reconcile() == 0


async def test_a_run_interrupted_by_a_crash_is_marked_failed_on_start(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    async with await SqliteStore.open(db) as store:
        crashed = await store.start_run(AS_OF, AS_OF, "csv:x", ["GBPUSD"])
    settings = load_settings({}, db_path=db, data_source=f"csv:{require_market_dir()}", TELEGRAM_ALLOWED_USERS="42")
    async with open_runtime(settings, BotClock(AS_OF - timedelta(hours=1))) as runtime:
        assert await runtime.settle_interrupted_runs() == 1
        summary = await runtime.store.run(crashed)
        assert summary is not None and summary.errors == ("interrupted: the bot stopped during the run",)
        assert await runtime.settle_interrupted_runs() == 0


async def test_a_strategy_that_failed_validation_is_not_offered_unless_overridden(tmp_path: Path) -> None:
    async for d in build(tmp_path / "gated"):
        await d.validate("GBPUSD", passed=False)
        report = await d.scan.scan()
        decisions = {x.symbol: x for x in await d.desk.offer(report.setups)}
        assert decisions["GBPUSD"].status is SignalStatus.DROPPED
        assert decisions["GBPUSD"].reason == ("failed pre-deploy validation v1: out-of-sample profit factor 0.92 < 1.2")
        assert decisions["XAUUSD"].status is SignalStatus.PENDING  # unvalidated: offered with its warning
        [xau] = [r for r in await d.outbox(OutboxKind.SIGNAL) if "XAUUSD" in str(r["text"])]
        assert "NOT VALIDATED: never validated" in str(xau["text"])
    async for d in build(tmp_path / "override", trade_failed_strategies=True):
        await d.validate("GBPUSD", passed=False)
        await d.state.set_mode(ExecutionMode.AUTO)
        report = await d.scan.scan()
        decisions = await d.desk.offer(report.setups)
        assert {x.status for x in decisions} == {SignalStatus.PENDING}  # offered, never executed
        assert {x.reason for x in decisions} == {
            "failed, so asking instead of executing",
            "unvalidated, so asking instead of executing",
        }


async def test_only_a_validated_system_is_executed_automatically_and_every_signal_says_its_status(
    tmp_path: Path,
) -> None:
    async for d in build(tmp_path):
        await d.validate("GBPUSD")
        await d.state.set_mode(ExecutionMode.AUTO)
        report = await d.scan.scan()
        decisions = {x.symbol: x for x in await d.desk.offer(report.setups)}
        assert await d.status(decisions["GBPUSD"].signal_id) is SignalStatus.FILLED
        assert decisions["XAUUSD"].status is SignalStatus.PENDING
        assert decisions["XAUUSD"].reason == "unvalidated, so asking instead of executing"
        gbp = await d.store.signal(decisions["GBPUSD"].signal_id)
        xau = await d.store.signal(decisions["XAUUSD"].signal_id)
        assert gbp is not None and gbp.validation is not None and gbp.validation.validated
        assert xau is not None and xau.validation is not None and xau.validation.status.value == "unvalidated"
        [message] = await d.outbox(OutboxKind.SIGNAL)
        text = str(message["text"])
        assert "⚠️ NOT VALIDATED: never validated" in text and "Never executed automatically" in text
        assert "score: no measured edge (not validated)" in text


async def test_a_pair_that_failed_validation_after_the_offer_refuses_the_approval(d: Desk) -> None:
    gbp, _ = await d.offer()
    await d.validate("GBPUSD", passed=False)
    outcome = await d.desk.approve(gbp, TRADER)
    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.message == (
        "Refused: trend_pullback on GBPUSD failed pre-deploy validation v1 since this was offered: "
        "out-of-sample profit factor 0.92 < 1.2."
    )
    assert await d.status(gbp) is SignalStatus.PENDING


async def test_a_signal_of_parameters_no_longer_traded_cannot_be_approved(d: Desk) -> None:
    gbp, _ = await d.offer()
    traded = d.desk.systems.specs[("trend_pullback", "GBPUSD")]
    retuned = replace(traded, params={**traded.params, "atr_stop_mult": 2.0})  # a restart with a new config
    d.desk.systems = SystemBook([*(s for s in d.desk.systems.specs.values() if s != traded), retuned])
    outcome = await d.desk.approve(gbp, TRADER)
    assert outcome.kind is OutcomeKind.INVALID
    assert outcome.message == (
        "Refused: trend_pullback on GBPUSD trades other parameters or rules since this was offered; "
        "the signal has expired."
    )
    assert await d.status(gbp) is SignalStatus.EXPIRED and d.broker.orders == []


async def test_a_fill_through_the_stop_opens_no_position(d: Desk) -> None:
    signal_id, _ = await d.offer()
    record = await d.store.signal(signal_id)
    assert record is not None
    setup = record.scored.setup
    d.broker.fill_at = setup.stop - setup.risk  # the quote was fine; the market gapped before the fill
    outcome = await d.desk.approve(signal_id, TRADER)
    assert outcome.kind is OutcomeKind.REFUSED and "through the stop" in outcome.message
    assert await d.status(signal_id) is SignalStatus.FAILED
    assert await d.store.open_trades([TradeKind.PAPER]) == []


async def test_a_setup_whose_expiry_passed_while_the_market_was_closed_is_not_offered(d: Desk) -> None:
    report = await d.scan.scan()
    d.clock.advance(timedelta(hours=2))  # the bars closed at 09:00 and expire at 11:00; now it is 11:40
    decisions = await d.desk.offer(report.setups)
    assert {(x.status, x.reason) for x in decisions} == {(SignalStatus.DROPPED, "expired before it could be offered")}
    assert await d.outbox(OutboxKind.SIGNAL) == []


async def test_positions_are_checked_on_the_bars_the_scan_just_loaded(d: Desk) -> None:
    signal_id, _ = await d.offer()
    await d.desk.approve(signal_id, TRADER)
    d.clock.advance(timedelta(days=5))
    report = await d.scan.scan()
    fetched = d.provider.fetches
    closed = await d.monitor.check(None, report.bars)
    assert [t.signal_id for t in closed if t.kind is TradeKind.PAPER] == [signal_id]
    assert d.provider.fetches == fetched  # no second load of what the scan had


async def test_bars_that_begin_after_a_positions_entry_are_loaded_again_whole(d: Desk) -> None:
    signal_id, _ = await d.offer()
    await d.desk.approve(signal_id, TRADER)
    d.clock.advance(timedelta(days=5))
    report = await d.scan.scan()
    tails = {symbol: bars.tail(10) for symbol, bars in report.bars.items()}  # what a run keeps of a flat symbol
    fetched = d.provider.fetches
    [closed] = [t for t in await d.monitor.check(None, tails) if t.kind is TradeKind.PAPER]
    assert closed.signal_id == signal_id and d.provider.fetches == fetched + 1  # its symbol's bars, fetched whole
    assert closed.exit_time is not None and closed.exit_time < tails[closed.symbol].bar_time(
        0
    )  # an exit the tail lacks


async def test_the_approval_and_its_order_intent_commit_together(d: Desk) -> None:
    signal_id, _ = await d.offer()
    d.broker.fail_with = "connection reset"  # the send fails after the commit: the intent must already be there
    await d.desk.approve(signal_id, TRADER)
    async with d.store._read("orders") as db:  # the row the restart reconciles by client order id
        rows = await db.execute_fetchall("SELECT client_order_id, quantity FROM orders")
    record = await d.store.signal(signal_id)
    assert record is not None and record.decided_by == TRADER
    assert [(r[0], r[1]) for r in rows] == [(signal_id, str(record.quantity))]
    assert len(d.broker.orders) == 1 and d.broker.orders[0].stop == record.scored.setup.stop


async def submitted_after_a_crash(d: Desk) -> str:
    """A signal approved with its order intent committed, as a kill -9 right after the commit leaves it."""
    signal_id, _ = await d.offer()
    record = await d.store.signal(signal_id)
    assert record is not None and record.quantity is not None
    setup = record.scored.setup
    request = OrderRequest(signal_id, setup.symbol, setup.side, record.quantity, stop=setup.stop, target=setup.target)
    assert await d.store.approve_order(signal_id, SignalStatus.PENDING, request, d.clock.now(), by=TRADER)
    assert not await d.store.approve_order(signal_id, SignalStatus.PENDING, request, d.clock.now(), by=TRADER)
    return signal_id


async def test_restart_records_the_fill_the_broker_already_made_without_sending_again(d: Desk) -> None:
    signal_id = await submitted_after_a_crash(d)
    record = await d.store.signal(signal_id)
    assert record is not None and record.quantity is not None
    setup = record.scored.setup
    instrument = default_instrument(setup.symbol)
    # The order reached the broker before the crash: the broker knows it by its client order id.
    made = await d.broker.paper.place_order(
        instrument, OrderRequest(signal_id, setup.symbol, setup.side, record.quantity)
    )
    assert await d.desk.reconcile() == 1
    assert d.broker.orders == []  # nothing sent again
    (trade,) = await d.store.open_trades([TradeKind.PAPER])
    assert trade.signal_id == signal_id and trade.entry_price == made.price and trade.approver_id == TRADER
    assert trade.entry_fees == made.fees and trade.entry_time == made.filled_at
    assert await d.status(signal_id) is SignalStatus.FILLED


async def test_restart_sends_once_an_order_the_broker_never_received(d: Desk) -> None:
    signal_id = await submitted_after_a_crash(d)
    assert await d.desk.reconcile() == 1
    assert [o.client_order_id for o in d.broker.orders] == [signal_id]
    assert await d.status(signal_id) is SignalStatus.FILLED
    assert await d.desk.reconcile() == 0


async def test_restart_leaves_the_intent_when_the_broker_cannot_answer(d: Desk) -> None:
    signal_id = await submitted_after_a_crash(d)
    d.broker.status_error = "503 from the broker"
    assert await d.desk.reconcile() == 1
    assert d.broker.orders == [] and await d.status(signal_id) is SignalStatus.ORDER_SUBMITTED
    texts = [str(m["text"]) for m in await d.outbox(OutboxKind.TEXT)]
    assert any("unconfirmed" in t and signal_id in t for t in texts)
    d.broker.status_error = None
    assert await d.desk.reconcile() == 1
    assert await d.status(signal_id) is SignalStatus.FILLED and len(d.broker.orders) == 1


async def test_a_loss_streak_pauses_entries_at_click_time_and_the_pause_survives_a_restart(tmp_path: Path) -> None:
    streak = ProtectionConfig(max_consecutive_losses=1, correlation_threshold=None)
    async for d in build(tmp_path, protections=streak):
        first, second = await d.offer()
        assert (await d.desk.approve(first, TRADER)).kind is OutcomeKind.DONE
        (trade,) = await d.store.open_trades([TradeKind.PAPER])
        d.clock.advance(timedelta(minutes=30))
        assert await d.store.close_trade(trade.trade_id, d.clock.now(), trade.stop, ExitReason.STOP, Decimal(0))
        refused = await d.desk.approve(second, TRADER)
        assert refused.kind is OutcomeKind.REFUSED and "1 losing trades in a row (limit 1" in refused.message
        assert "paused until the next session at 2025-06-12 21:00 UTC" in refused.message
        assert await d.status(second) is SignalStatus.PENDING  # refused, not lost: it may still be taken later
        view = await d.desk.book(d.clock.now())
        assert view.equity == Decimal(10000) + (trade.closed(d.clock.now(), trade.stop, ExitReason.STOP).pnl or 0)
    async for again in build(tmp_path, protections=streak):  # a restart reads the same book from the database
        again.clock.advance(timedelta(minutes=31))
        still = await again.desk.approve(second, TRADER)
        assert still.kind is OutcomeKind.REFUSED and "losing trades in a row" in still.message


async def test_protections_drop_new_signals_with_their_reason(tmp_path: Path) -> None:
    one_position = ProtectionConfig(max_open_positions=1, correlation_threshold=None)
    async for d in build(tmp_path, protections=one_position, default_mode=ExecutionMode.AUTO):
        await d.state.set_mode(ExecutionMode.AUTO)
        await d.validate("GBPUSD", "XAUUSD")
        await d.offer()
        (dropped,) = await d.store.signals_with_status(SignalStatus.DROPPED)
        assert dropped.reason == "protection: max open positions: 1 open >= limit 1"
        assert len(await d.store.open_trades([TradeKind.PAPER])) == 1


async def test_a_high_impact_usd_event_blocks_entries_around_it_with_its_reason(tmp_path: Path) -> None:
    calendar = tmp_path / "news.csv"
    calendar.write_text(
        "datetime_utc,currency,impact,title\n"
        "2025-06-12T10:00:00Z,USD,high,Core CPI m/m\n"
        "2025-06-12T09:45:00Z,JPY,high,BoJ rate decision\n"
    )
    async for d in build(tmp_path):
        d.desk.news = NewsSource(f"file:{calendar}")
        decisions = {s: await d.status(s) for s in await d.offer()}
        assert set(decisions.values()) == {SignalStatus.DROPPED}
        (dropped, _) = await d.store.signals_with_status(SignalStatus.DROPPED)
        assert dropped.reason is not None and dropped.reason.startswith("news embargo: USD Core CPI m/m at 10:00 UTC")
        assert "entries blocked 09:30-10:30 UTC" in dropped.reason


async def test_an_unavailable_calendar_is_told_once_and_the_fallback_applies(tmp_path: Path) -> None:
    async for d in build(tmp_path, embargo=EmbargoConfig(fallback=FeedFallback.BLOCK)):
        d.desk.news = NewsSource(f"file:{tmp_path / 'missing.json'}")
        offered = await d.offer()
        assert {await d.status(s) for s in offered} == {SignalStatus.DROPPED}
        (record, _) = await d.store.signals_with_status(SignalStatus.DROPPED)
        assert record.reason is not None and "news calendar unavailable" in record.reason
        texts = [str(m["text"]) for m in await d.outbox(OutboxKind.TEXT)]
        assert sum("news calendar unavailable" in t for t in texts) == 1  # said once, not per signal


async def test_a_pause_confirmed_while_an_approval_is_checked_holds_at_its_commit(d: Desk) -> None:
    gbp, _ = await d.offer()
    d.broker.quote_gate = asyncio.Event()  # the price source is slow: the approval waits inside its checks
    approval = asyncio.create_task(d.desk.approve(gbp, TRADER))
    while d.broker.quotes_waiting < 1:
        await asyncio.sleep(0.01)
    await d.state.set_paused(True)  # /stop confirmed now, "Stopped" already said
    d.broker.quote_gate.set()
    outcome = await approval
    assert (outcome.kind, outcome.message) == (OutcomeKind.REFUSED, "The bot is paused; /resume first.")
    assert d.broker.orders == [] and await d.status(gbp) is SignalStatus.PENDING


async def test_a_position_opened_while_an_approval_is_checked_is_judged_at_its_commit(tmp_path: Path) -> None:
    one_position = ProtectionConfig(max_open_positions=1)
    async for d in build(tmp_path, protections=one_position):
        gbp, xau = await d.offer()
        d.broker.quote_gate = asyncio.Event()
        first = asyncio.create_task(d.desk.approve(gbp, TRADER))
        second = asyncio.create_task(d.desk.approve(xau, TRADER))
        while d.broker.quotes_waiting < 2:  # both passed the protections on an empty book
            await asyncio.sleep(0.01)
        d.broker.quote_gate.set()
        outcomes = await asyncio.gather(first, second)
        assert sorted(o.kind for o in outcomes) == [OutcomeKind.DONE, OutcomeKind.REFUSED]
        [refused] = [o for o in outcomes if o.kind is OutcomeKind.REFUSED]
        assert refused.message == "Refused by protection: max open positions: 1 open >= limit 1"
        assert len(d.broker.orders) == 1 and len(await d.store.open_trades([TradeKind.PAPER])) == 1


async def test_an_order_still_on_its_way_counts_as_a_position_for_the_next_approval(tmp_path: Path) -> None:
    async for d in build(tmp_path, protections=ProtectionConfig(max_open_positions=1)):
        gbp, xau = await d.offer()
        d.broker.order_gate = asyncio.Event()  # the first order reaches the broker and waits for its answer
        first = asyncio.create_task(d.desk.approve(gbp, TRADER))
        while not d.broker.orders:
            await asyncio.sleep(0.01)
        assert await d.store.open_trades([TradeKind.PAPER]) == []  # no fill yet: only the order is on its way
        second = await asyncio.wait_for(d.desk.approve(xau, TRADER), timeout=5)
        assert (second.kind, second.message) == (
            OutcomeKind.REFUSED,
            "Refused by protection: max open positions: 1 open >= limit 1",
        )
        d.broker.order_gate.set()
        assert (await first).kind is OutcomeKind.DONE
        assert [o.client_order_id for o in d.broker.orders] == [gbp]
        assert await d.status(xau) is SignalStatus.PENDING  # refused, still offered: a press after the close works


async def test_twenty_presses_while_the_order_hangs_send_it_exactly_once(d: Desk) -> None:
    gbp, _ = await d.offer()
    d.broker.quote_gate = asyncio.Event()
    d.broker.order_gate = asyncio.Event()  # the first order request hangs at the broker
    presses = [asyncio.create_task(d.desk.approve(gbp, TRADER)) for _ in range(20)]
    await asyncio.sleep(0.05)
    d.broker.quote_gate.set()
    while not d.broker.orders:
        await asyncio.sleep(0.01)
    assert await d.desk.settle_unconfirmed() == 0  # the minute's settlement leaves the order being sent alone
    d.broker.order_gate.set()
    outcomes = await asyncio.gather(*presses)
    assert [o.kind for o in outcomes].count(OutcomeKind.DONE) == 1
    assert {o.message for o in outcomes if o.kind is not OutcomeKind.DONE} <= {
        "This signal is being approved already.",
        "This button is no longer valid.",
    }
    await d.desk.settle_unconfirmed()
    assert [o.client_order_id for o in d.broker.orders] == [gbp] and await d.status(gbp) is SignalStatus.FILLED


async def test_the_monitor_stops_a_close_only_strategy_on_a_close_not_a_wick(d: Desk) -> None:
    signal_id, _ = await d.offer()
    await d.desk.approve(signal_id, TRADER)
    [trade] = await d.store.open_trades([TradeKind.PAPER])
    d.monitor.stop_triggers[trade.strategy] = StopTrigger.CLOSE
    d.clock.advance(timedelta(days=5))
    (closed,) = [t for t in await d.monitor.check() if t.kind is TradeKind.PAPER]
    instrument = default_instrument(trade.symbol)
    frame = d.provider.fetch(instrument, d.clock.now(), 2000)
    bars = Bars.from_frame(frame, instrument.interval)
    start = int(np.searchsorted(bars.time, to_nanos(trade.entry_time)))
    close_only = find_exit(bars, start, trade.side, float(trade.stop), float(trade.target), max_bars=48,
                           stop_trigger=StopTrigger.CLOSE)  # fmt: skip
    assert close_only is not None and closed.exit_time == close_only.at and closed.exit_reason is close_only.reason
    if closed.exit_reason is ExitReason.STOP:  # filled at the close beyond the stop (plus costs), not at the level
        assert close_only.price == float(bars.close[close_only.bar_index])


async def test_a_routed_account_sizes_with_its_own_equity_and_refuses_with_its_own_protections(
    tmp_path: Path,
) -> None:
    async for first in build(tmp_path / "default"):
        plain = {s: (await first.store.signal(s)) for s in await first.offer()}
    oanda = Account("oanda", Decimal("5000"), Sizing(account_currency="USD"), ProtectionConfig(max_open_positions=1))
    async for d in build(tmp_path / "routed", accounts={Market.FX: oanda}):
        offered = await d.offer()
        for signal_id in offered:
            record, before = await d.store.signal(signal_id), plain[signal_id]
            assert record is not None and before is not None and record.quantity is not None
            assert before.quantity is not None and record.quantity < before.quantity  # half the equity, less size
        assert (await d.desk.approve(offered[0], TRADER)).kind is OutcomeKind.DONE
        refused = await d.desk.approve(offered[1], TRADER)
        assert refused.kind is OutcomeKind.REFUSED and "oanda account" in refused.message
        assert "open positions" in refused.message


def test_an_inr_account_sizes_an_nse_trade_without_any_usdinr_rate() -> None:
    sbin = default_instrument("SBIN")
    kite = Account("kite", Decimal("500000"), Sizing(account_currency="INR"))
    policy = DeskPolicy(sizing=Sizing(account_currency="USD"), accounts={Market.NSE: kite})
    desk = SignalDesk(None, None, None, None, SteppingClock(AS_OF), {"SBIN": sbin}, policy)  # type: ignore[arg-type]
    setup = Setup(
        "defining_order", "SBIN", Side.LONG, Decimal("812.00"), Decimal("804.00"), (Decimal("828.00"),),
        AS_OF, sbin.interval,
    )  # fmt: skip
    assert desk.account_of("SBIN") is kite and desk.account_of("GBPUSD") is None
    refused = desk.size(setup, policy.equity)
    assert isinstance(refused, str) and "USD" in refused  # the USD account cannot price INR without a rate
    sized = desk.size(setup, kite.equity, sizing=kite.sizing)
    assert not isinstance(sized, str) and sized.quantity > 0
    assert sized.summary("INR").risk <= kite.equity * kite.sizing.risk_fraction
    entered = AS_OF - timedelta(hours=2)
    lost = trade_from_setup(setup, TradeKind.LIVE, Decimal(100), Decimal(1), entered, Decimal("812.00"), Decimal(0))
    lost = lost.closed(AS_OF, Decimal("804.00"), ExitReason.STOP, Decimal(0))
    assert desk.account_pnl(lost, kite.sizing) == Decimal("-800.00")  # in the INR account
    assert desk._overall_pnl(lost) == 0  # never -800 "USD" in the overall daily loss: no USDINR rate


async def test_a_live_position_at_a_broker_without_stops_is_closed_by_the_bot_with_a_closing_order(
    tmp_path: Path,
) -> None:
    async for d in build(tmp_path, live_markets=frozenset({Market.FX})):
        d.monitor.broker = d.broker
        d.monitor.managed_live = frozenset(SYMBOLS)
        signal_id, _ = await d.offer()
        await d.desk.approve(signal_id, TRADER)
        [trade] = await d.store.open_trades([TradeKind.LIVE])
        assert await d.monitor.check_live() == []  # the broker holds no exit for it: not asked
        d.clock.advance(timedelta(days=5))
        [closed] = await d.monitor.check()
        assert closed.kind is TradeKind.LIVE and d.broker.closes == [trade.trade_id]  # one closing order, sent
        assert closed.exit_reason in {ExitReason.STOP, ExitReason.TARGET, ExitReason.TIME}
        assert await d.store.open_trades([TradeKind.LIVE]) == []
        assert await d.monitor.check() == [] and d.broker.closes == [trade.trade_id]  # never closed twice
