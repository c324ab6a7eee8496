"""LIVE trades that close at OANDA (stop-loss, take-profit, by hand) are recorded at OANDA's price and time.

First the adapter (`OandaBroker.trade_exit` over real HTTP to the fake OANDA server), then the running bot:
the real runtime approves a GBPUSD signal into a LIVE OANDA trade, the test closes that trade at the fake as
OANDA would, and the next run's position check records the exit, with honest P&L, and tells the chat.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.bootstrap import open_runtime
from bot.brokers.oanda import OandaBroker, OandaSettings, exit_reason, parse_time
from bot.brokers.paper import PaperBroker
from bot.brokers.resilience import CircuitBreaker, ResilientBroker, RetryPolicy
from bot.ops.clock import BotClock
from data.market.csv_provider import CsvProvider
from engine.catalog import default_instrument
from engine.costs import CostModel
from engine.domain import Side
from engine.ports import BrokerError, BrokerErrorKind, FixedClock
from engine.trading import BrokerExit, ExitReason, OrderRequest, Trade, TradeKind
from tests.e2e.test_bot import ManualMonotonic
from tests.fakes.oanda_server import CloseReason, FakeOanda, Fault, Route
from tests.integration.live_support import AS_OF, approved_signal, bot, chat_texts, oanda_settings
from tests.support import require_market_dir

EURUSD = default_instrument("EURUSD")
T_CLOSE = datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)  # after any wall-clock entry time of the fake


@pytest.fixture
async def oanda() -> AsyncIterator[FakeOanda]:
    async with FakeOanda() as fake:
        fake.set_price("EUR_USD", "1.08990", "1.09000")
        fake.set_price("GBP_USD", "1.35645", "1.35657")
        yield fake


@pytest.fixture
async def adapter(oanda: FakeOanda) -> AsyncIterator[OandaBroker]:
    settings = OandaSettings(oanda.account_id, SecretStr(oanda.token), base_url=oanda.base_url, timeout_s=2.0)
    async with OandaBroker(settings, {"EURUSD": EURUSD}) as broker:
        yield broker


def eurusd_long(cid: str = "sig-1", quantity: str = "0.10") -> OrderRequest:
    return OrderRequest(cid, "EURUSD", Side.LONG, Decimal(quantity), stop=Decimal("1.085"), target=Decimal("1.095"))


# ------------------------------------------------------------------------------------------------ the adapter


async def test_an_open_trade_has_no_exit_yet(adapter: OandaBroker, oanda: FakeOanda) -> None:
    await adapter.place_order(EURUSD, eurusd_long())
    assert await adapter.trade_exit("sig-1") is None
    [asked] = oanda.requests_for(Route.TRADE)
    assert (asked.method, asked.path) == ("GET", f"/v3/accounts/{oanda.account_id}/trades/@sig-1")
    assert asked.authorized


@pytest.mark.parametrize(
    ("close", "price", "reason"),
    [
        (CloseReason.STOP_LOSS, "1.08500", ExitReason.STOP),
        (CloseReason.TAKE_PROFIT, "1.09500", ExitReason.TARGET),
        (CloseReason.CLIENT, "1.09123", ExitReason.MANUAL),
    ],
)
async def test_a_closed_trade_reports_oanda_price_time_reason_and_costs(
    adapter: OandaBroker, oanda: FakeOanda, close: CloseReason, price: str, reason: ExitReason
) -> None:
    oanda.commission = Decimal("0.7500")
    await adapter.place_order(EURUSD, eurusd_long())
    fill = oanda.close_trade("sig-1", price, close, at=T_CLOSE, financing="-0.1234")
    ended = await adapter.trade_exit("sig-1")
    assert ended == BrokerExit(
        client_order_id="sig-1",
        price=Decimal(price),
        closed_at=T_CLOSE,
        reason=reason,
        quantity=Decimal("0.10"),
        fees=Decimal("0.7500"),
        financing=Decimal("-0.1234"),
    )
    assert ended.closed_at == parse_time(fill["time"])
    assert ended.costs == Decimal("0.8734")  # commission plus the financing the account paid
    [trade] = oanda.trades
    assert trade["state"] == "CLOSED" and trade["closingTransactionIDs"] == [fill["id"]]
    for key in ("stopLossOrder", "takeProfitOrder"):
        expected = "FILLED" if trade[key]["id"] == fill["orderID"] else "CANCELLED"
        assert trade[key]["state"] == expected
    assert await adapter.positions() == []


def test_oanda_closing_reasons_map_to_exit_reasons() -> None:
    assert exit_reason("STOP_LOSS_ORDER") is ExitReason.STOP
    assert exit_reason("TRAILING_STOP_LOSS_ORDER") is ExitReason.STOP
    assert exit_reason("TAKE_PROFIT_ORDER") is ExitReason.TARGET
    assert exit_reason("MARKET_ORDER_MARGIN_CLOSEOUT") is ExitReason.MANUAL


async def test_a_trade_oanda_never_opened_is_a_plain_refusal(adapter: OandaBroker) -> None:
    with pytest.raises(BrokerError, match="OANDA has no trade opened by order never-sent") as refused:
        await adapter.trade_exit("never-sent")
    assert refused.value.kind is BrokerErrorKind.REJECTED


async def test_the_resilient_broker_retries_a_503_and_the_breaker_sees_it(
    adapter: OandaBroker, oanda: FakeOanda
) -> None:
    await adapter.place_order(EURUSD, eurusd_long())
    oanda.close_trade("sig-1", "1.08500", at=T_CLOSE)
    breaker = CircuitBreaker("oanda", failure_threshold=2, cool_down=timedelta(seconds=60))

    async def no_sleep(seconds: float) -> None:
        del seconds

    safe = ResilientBroker(adapter, breaker, RetryPolicy(attempts=2), sleep=no_sleep, rng=lambda: 0.0)
    oanda.inject(Route.TRADE, Fault.unavailable())
    ended = await safe.trade_exit("sig-1")
    assert ended is not None and ended.reason is ExitReason.STOP
    assert [r.status for r in oanda.requests_for(Route.TRADE)] == [503, 200]
    oanda.inject(Route.TRADE, Fault.unavailable(), Fault.unavailable())
    with pytest.raises(BrokerError) as failed:
        await safe.trade_exit("sig-1")
    assert failed.value.transient
    assert breaker.snapshot().failures == 2


async def test_paper_positions_never_close_at_the_venue() -> None:
    paper = PaperBroker(CsvProvider(require_market_dir()), {"EURUSD": EURUSD}, FixedClock(AS_OF), CostModel())
    assert await paper.trade_exit("anything") is None


def test_a_broker_exit_checks_its_fields() -> None:
    good = BrokerExit("sig-1", Decimal("1.1"), T_CLOSE, ExitReason.STOP, Decimal("0.1"), financing=Decimal("2"))
    assert good.costs == Decimal(0)  # a financing credit lowers the costs, never below zero
    with pytest.raises(ValueError, match="price must be positive"):
        replace(good, price=Decimal(0))
    with pytest.raises(ValueError, match="closed quantity must be positive"):
        replace(good, quantity=Decimal(0))
    with pytest.raises(ValueError, match="fees must be >= 0"):
        replace(good, fees=Decimal("-1"))
    with pytest.raises(ValueError, match="closed_at must be a timezone-aware UTC datetime"):
        replace(good, closed_at=datetime(2031, 1, 2))


# ------------------------------------------------------------------------------------------------ the bot


def expected_pnl(trade: Trade, exit_price: Decimal, exit_costs: Decimal) -> Decimal:
    gross = (exit_price - trade.entry_price) * trade.side.sign * trade.quantity * trade.contract_size
    return gross - trade.entry_fees - exit_costs


async def test_a_stop_loss_hit_at_oanda_is_recorded_as_a_stop_at_oanda_price_and_time(
    tmp_path: Path, oanda: FakeOanda
) -> None:
    oanda.commission = Decimal("1.2500")
    async with bot(oanda_settings(tmp_path / "bot.db", oanda)) as rt:
        signal_id = await approved_signal(rt)
        [opened] = await rt.store.open_trades([TradeKind.LIVE])
        assert (opened.trade_id, opened.entry_price, opened.entry_fees) == (
            signal_id,
            Decimal("1.35657"),
            Decimal("1.2500"),
        )
        fill = oanda.close_trade(signal_id, "1.35347", CloseReason.STOP_LOSS, at=T_CLOSE, financing="-0.3400")

        await rt.analyse()  # the scheduled run checks the live positions after the paper ones

        assert await rt.store.open_trades([TradeKind.LIVE]) == []
        [done] = await rt.store.trades([TradeKind.LIVE])
        assert (done.exit_reason, done.exit_price, done.exit_time) == (ExitReason.STOP, Decimal("1.35347"), T_CLOSE)
        assert done.exit_time == parse_time(fill["time"])
        assert done.exit_fees == Decimal("1.5900")  # closing commission 1.25 + financing paid 0.34
        assert done.pnl == expected_pnl(opened, Decimal("1.35347"), Decimal("1.5900"))
        assert done.pnl is not None and done.pnl < 0
        assert done.pnl_r is not None and Decimal("-1.1") < done.pnl_r < Decimal("-1")  # a full R plus costs
        texts = await chat_texts(rt)
        assert any("closed (stop) @ <code>1.35347</code>" in t and signal_id in t for t in texts)

        await rt.analyse()  # nothing is recorded or told twice
        assert len(await rt.store.trades([TradeKind.LIVE])) == 1
        assert sum("closed (stop)" in t for t in await chat_texts(rt)) == 1
        assert len(oanda.requests_for(Route.TRADE)) == 1  # a closed trade is not asked about again


async def test_a_take_profit_hit_at_oanda_is_recorded_as_a_target(tmp_path: Path, oanda: FakeOanda) -> None:
    async with bot(oanda_settings(tmp_path / "bot.db", oanda)) as rt:
        signal_id = await approved_signal(rt)
        [opened] = await rt.store.open_trades([TradeKind.LIVE])
        target = format(opened.target, "f")
        oanda.close_trade(signal_id, target, CloseReason.TAKE_PROFIT, at=T_CLOSE)

        [done] = await rt.monitor.check_live()

        assert (done.exit_reason, done.exit_price, done.exit_time) == (ExitReason.TARGET, opened.target, T_CLOSE)
        assert done.pnl == expected_pnl(opened, opened.target, Decimal(0))
        assert done.pnl is not None and done.pnl > 0
        assert await rt.store.trades([TradeKind.LIVE]) == [done]
        assert any(f"closed (target) @ <code>{target}</code>" in t for t in await chat_texts(rt))


async def test_a_trade_closed_by_hand_at_oanda_is_recorded_as_manual(tmp_path: Path, oanda: FakeOanda) -> None:
    async with bot(oanda_settings(tmp_path / "bot.db", oanda)) as rt:
        signal_id = await approved_signal(rt)
        oanda.close_trade(signal_id, "1.35700", CloseReason.CLIENT, at=T_CLOSE)
        [done] = await rt.monitor.check_live()
        assert (done.exit_reason, done.exit_price) == (ExitReason.MANUAL, Decimal("1.35700"))


async def test_a_trade_still_open_at_oanda_is_left_open(tmp_path: Path, oanda: FakeOanda) -> None:
    async with bot(oanda_settings(tmp_path / "bot.db", oanda)) as rt:
        signal_id = await approved_signal(rt)
        told = len(await chat_texts(rt))
        await rt.analyse()
        [still] = await rt.store.open_trades([TradeKind.LIVE])
        assert still.trade_id == signal_id and still.is_open
        assert [r.path.rsplit("/", 1)[-1] for r in oanda.requests_for(Route.TRADE)] == [f"@{signal_id}"]
        assert len(await chat_texts(rt)) == told


async def test_oanda_unavailable_during_the_check_loses_nothing_and_the_next_check_records_it(
    tmp_path: Path, oanda: FakeOanda
) -> None:
    async with bot(oanda_settings(tmp_path / "bot.db", oanda, retry_attempts=2)) as rt:
        signal_id = await approved_signal(rt)
        oanda.close_trade(signal_id, "1.35347", CloseReason.STOP_LOSS, at=T_CLOSE)
        oanda.inject(Route.TRADE, Fault.unavailable(), Fault.unavailable())  # both attempts of this check

        assert await rt.monitor.check_live() == []
        [still] = await rt.store.open_trades([TradeKind.LIVE])
        assert still.trade_id == signal_id
        assert [r.status for r in oanda.requests_for(Route.TRADE)] == [503, 503]
        assert not any("closed (stop)" in t for t in await chat_texts(rt))

        await rt.analyse()  # the next scheduled run asks again

        [done] = await rt.store.trades([TradeKind.LIVE])
        assert (done.exit_reason, done.exit_price, done.exit_time) == (ExitReason.STOP, Decimal("1.35347"), T_CLOSE)
        assert sum("closed (stop)" in t for t in await chat_texts(rt)) == 1


async def test_a_live_positions_plan_stop_is_moved_at_oanda_after_the_bar_that_earned_it(
    tmp_path: Path, oanda: FakeOanda
) -> None:
    settings = oanda_settings(tmp_path / "bot.db", oanda)
    plan = {"trend_pullback": {"exits": {"breakeven_r": 0.2}}}
    settings = type(settings).model_validate(settings.model_dump() | {"strategies": plan})
    mono = ManualMonotonic()
    oanda.now = AS_OF + timedelta(seconds=2)  # fills stamped on the bot's clock, so the 09:00 bar follows the entry
    async with open_runtime(settings, BotClock(AS_OF, 1.0, monotonic=mono)) as rt:
        signal_id = await approved_signal(rt)
        [opened] = await rt.store.open_trades([TradeKind.LIVE])
        mono.t += 3600  # 10:40: the 09:00 bar closed high, but it began before the entry: it does not count
        assert await rt.monitor.check() == [] and oanda.requests_for(Route.TRADE_ORDERS) == []
        mono.t += 3600  # 11:40: the 10:00 bar (the first after the entry) reached 1.35969, past the plan's +0.2R
        assert await rt.monitor.check() == []  # the broker holds the exit; only the stop moves
        [moved] = oanda.requests_for(Route.TRADE_ORDERS)
        assert moved.path.endswith(f"/trades/@{signal_id}/orders")
        [move] = (await rt.store.stop_moves([signal_id]))[signal_id]
        assert (move.old, move.new) == (opened.stop, opened.entry_price)
        assert any("stop moved" in t and "by the bot" in t for t in await chat_texts(rt))
        await rt.monitor.check()
        assert len(oanda.requests_for(Route.TRADE_ORDERS)) == 1  # once, not at every check


async def test_a_system_with_partial_targets_is_not_traded_live_where_they_would_not_be_sent(
    tmp_path: Path, oanda: FakeOanda
) -> None:
    settings = oanda_settings(tmp_path / "bot.db", oanda)
    plan = {"trend_pullback": {"exits": {"partials": [[1.0, 0.5]]}}}
    settings = type(settings).model_validate(settings.model_dump() | {"strategies": plan})
    async with bot(settings) as rt:
        _, decisions = await rt.analyse()
        [dropped] = decisions
        assert dropped.status.value == "dropped" and "partial targets" in dropped.reason
        assert oanda.requests_for(Route.ORDERS) == []
