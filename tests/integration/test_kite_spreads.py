"""Hedged option spreads through Kite: hedge first, main second, rollback, exits, and a kill -9 between legs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.brokers.kite.broker import KiteBroker
from bot.brokers.kite.client import KiteClient, RateClass, RateLimiter
from bot.brokers.kite.session import KiteSettings
from bot.services.spreads import SpreadExecutor, SpreadState
from engine.options import LegAction, LegRole, OptionType, SpreadPlan
from tests.fakes.kite_server import API_KEY, API_SECRET, FakeKite, Fault, Route

HEDGE, MAIN = "NIFTY2511623100PE", "NIFTY2511623300PE"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def kite() -> AsyncIterator[FakeKite]:
    async with FakeKite() as server:
        server.set_quote(f"NFO:{HEDGE}", "20.10", "20.40")
        server.set_quote(f"NFO:{MAIN}", "61.00", "61.35")
        server.add_instrument(HEDGE, "2025-01-16", 23100, "PE")
        server.add_instrument(MAIN, "2025-01-16", 23300, "PE")
        server.add_instrument("NIFTY25JANFUT", "2025-01-30", 0, "FUT")
        yield server


@pytest.fixture
async def broker(kite: FakeKite) -> AsyncIterator[KiteBroker]:
    settings = KiteSettings(API_KEY, SecretStr(API_SECRET), base_url=kite.base_url, timeout_s=1.0)
    client = KiteClient(settings, limiter=RateLimiter(dict.fromkeys(RateClass, 1000.0)))
    b = KiteBroker(client, {}, poll_interval_s=0.01)
    await b.login(kite.issue_request_token())
    yield b
    await client.aclose()


def plan(lots: int = 2, freeze: int = 1800) -> SpreadPlan:
    return SpreadPlan("a1b2c3d4e5", HEDGE, MAIN, quantity=75 * lots, lot=75, freeze=freeze)


def placed(kite: FakeKite) -> list[tuple[str, str, str, str]]:
    return [
        (r.form["tag"], r.form["tradingsymbol"], r.form["transaction_type"], r.form["quantity"])
        for r in kite.requests_for(Route.PLACE)
    ]


async def test_the_hedge_is_bought_before_the_main_leg_is_sold(broker: KiteBroker, kite: FakeKite) -> None:
    result = await SpreadExecutor(broker).open(plan())
    assert result.state is SpreadState.OPEN
    assert placed(kite) == [("a1b2c3d4e5ho1", HEDGE, "BUY", "150"), ("a1b2c3d4e5mo1", MAIN, "SELL", "150")]
    assert all(r.form["product"] == "NRML" and r.form["exchange"] == "NFO" for r in kite.requests_for(Route.PLACE))
    assert result.average(MAIN, buy=False) == Decimal("61.00") and result.average(HEDGE, buy=True) == Decimal("20.40")
    closed = await SpreadExecutor(broker).close(plan(), 150)
    assert closed.state is SpreadState.CLOSED
    assert placed(kite)[2:] == [("a1b2c3d4e5mc1", MAIN, "BUY", "150"), ("a1b2c3d4e5hc1", HEDGE, "SELL", "150")]
    assert await broker.positions() == [] and all(p["quantity"] == 0 for p in (await kite_positions(kite)))


async def kite_positions(kite: FakeKite) -> list[dict[str, object]]:
    return kite.positions


async def test_a_rejected_main_leg_rolls_the_hedge_back(broker: KiteBroker, kite: FakeKite) -> None:
    kite.refuse[MAIN] = "Insufficient funds. Required margin is 95417.84 but available margin is 74251.80"
    result = await SpreadExecutor(broker).open(plan())
    assert result.state is SpreadState.ROLLED_BACK and "Insufficient funds" in (result.reason or "")
    assert [p[0] for p in placed(kite)] == ["a1b2c3d4e5ho1", "a1b2c3d4e5mo1", "a1b2c3d4e5hr1"]
    assert placed(kite)[2] == ("a1b2c3d4e5hr1", HEDGE, "SELL", "150")
    assert all(p["quantity"] == 0 for p in await kite_positions(kite))  # no naked hedge, no short


async def test_legs_above_the_freeze_quantity_go_out_as_whole_lot_children(broker: KiteBroker, kite: FakeKite) -> None:
    result = await SpreadExecutor(broker).open(plan(lots=30, freeze=1800))
    assert result.state is SpreadState.OPEN
    assert placed(kite) == [
        ("a1b2c3d4e5ho1", HEDGE, "BUY", "1800"),
        ("a1b2c3d4e5ho2", HEDGE, "BUY", "450"),
        ("a1b2c3d4e5mo1", MAIN, "SELL", "1800"),
        ("a1b2c3d4e5mo2", MAIN, "SELL", "450"),
    ]


async def test_a_lost_answer_between_legs_is_resumed_by_tag_without_duplicates(
    broker: KiteBroker, kite: FakeKite
) -> None:
    kite.inject(Route.PLACE, Fault.accept_then_fail())  # the hedge is bought, the answer lost
    executor = SpreadExecutor(broker)
    with pytest.raises(Exception, match="unavailable"):
        await executor.open(plan())
    result = await executor.open(plan())
    assert result.state is SpreadState.OPEN
    assert [p[0] for p in placed(kite)] == ["a1b2c3d4e5ho1", "a1b2c3d4e5mo1"]


async def test_the_instrument_master_gives_the_live_contract_and_lot_size(broker: KiteBroker) -> None:
    master = await broker.master()
    assert len(master) == 2  # the future is not an option
    contract = master.contract("NIFTY", date(2025, 1, 16), 23300, OptionType.PUT)
    assert contract is not None and (contract.tradingsymbol, contract.lot_size) == (MAIN, 75)
    assert master.next_expiry("NIFTY", date(2025, 1, 14)) == date(2025, 1, 16)
    assert await broker.master() is master  # fetched once a day


async def test_the_basket_margin_counts_the_hedge(broker: KiteBroker) -> None:
    p = plan()
    both = [*p.orders(LegRole.HEDGE, LegAction.OPEN), *p.orders(LegRole.MAIN, LegAction.OPEN)]
    naked = list(p.orders(LegRole.MAIN, LegAction.OPEN))
    assert await broker.basket_margin(both) < await broker.basket_margin(naked)


CHILD = """
import asyncio, os, signal, sys
from pydantic import SecretStr
from bot.brokers.kite.broker import KiteBroker
from bot.brokers.kite.client import KiteClient
from bot.brokers.kite.session import KiteSettings
from bot.services.spreads import SpreadExecutor
from engine.options import SpreadPlan

class DiesAfterTheHedge:
    name = "kite"
    def __init__(self, inner): self.inner = inner
    async def leg_fill(self, order):
        fill = await self.inner.leg_fill(order)
        if "ho" in order.tag:
            os.kill(os.getpid(), signal.SIGKILL)
        return fill
    async def leg_status(self, tag): return await self.inner.leg_status(tag)

async def main():
    client = KiteClient(KiteSettings(sys.argv[1], SecretStr(sys.argv[2]), base_url=sys.argv[3]))
    broker = KiteBroker(client, {}, poll_interval_s=0.01)
    await broker.login(sys.argv[4])
    await SpreadExecutor(DiesAfterTheHedge(broker)).open(SpreadPlan("a1b2c3d4e5", sys.argv[5], sys.argv[6], 150, 75))

asyncio.run(main())
"""


async def test_a_kill_between_the_legs_leaves_a_consistent_book_after_restart(
    broker: KiteBroker, kite: FakeKite
) -> None:
    token = kite.issue_request_token("childtoken0123")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, API_KEY, API_SECRET, kite.base_url, token, HEDGE, MAIN, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert await asyncio.wait_for(child.wait(), 30) == -signal.SIGKILL
    assert [p[0] for p in placed(kite)] == ["a1b2c3d4e5ho1"]  # the hedge only: long options, no short
    await broker.login(kite.issue_request_token("restarttoken01"))
    result = await SpreadExecutor(broker).open(plan())  # the restart resumes the approved entry
    assert result.state is SpreadState.OPEN
    assert [p[0] for p in placed(kite)] == ["a1b2c3d4e5ho1", "a1b2c3d4e5mo1"]  # nothing sent twice
