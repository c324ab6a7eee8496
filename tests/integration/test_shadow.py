"""Shadow mode: the bot trades paper and records the exact OANDA order it would have sent, sending nothing.

The real runtime runs twice on the same signal against the fake OANDA server: once in shadow mode (the fake
must see no request at all) and once trading for real (the fake receives the POST). The recorded request must
be that POST exactly: method, path and JSON body. `tradebot shadow` then shows it beside the paper fill.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from functools import partial
from http import HTTPMethod
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.brokers.oanda import OandaSettings, market_order
from bot.brokers.paper import PaperBroker
from bot.brokers.shadow import ShadowBroker, shadow_text
from data.market.csv_provider import CsvProvider
from data.shadow_orders import ShadowOrder
from data.sqlite.store import SqliteStore
from engine.catalog import default_instrument
from engine.costs import CostModel
from engine.domain import Side
from engine.ports import FixedClock
from engine.trading import OrderRequest, TradeKind
from tests.fakes.oanda_server import FakeOanda, Route
from tests.integration.live_support import AS_OF, approved_signal, bot, oanda_settings
from tests.support import require_market_dir


@pytest.fixture
async def oanda() -> AsyncIterator[FakeOanda]:
    async with FakeOanda() as fake:
        fake.set_price("GBP_USD", "1.35645", "1.35657")
        yield fake


def tradebot(cwd: Path, *args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_", "OANDA_"))}
    env["TRADEBOT_DB_PATH"] = str(db)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


async def test_shadow_mode_records_the_exact_oanda_order_sends_nothing_and_fills_on_paper(
    tmp_path: Path, oanda: FakeOanda, caplog: pytest.LogCaptureFixture
) -> None:
    shadow_db = tmp_path / "shadow.db"
    caplog.set_level(logging.INFO)
    async with bot(oanda_settings(shadow_db, oanda, shadow=True)) as rt:
        signal_id = await approved_signal(rt)
        status = rt.broker_status()
        [(kept, paper_fill)] = await rt.store.shadow_orders()
        [trade] = await rt.store.open_trades()

    assert oanda.requests == []  # not one HTTP request: no price, no order, no lookup
    assert status == "paper · shadow mode: orders for OANDA practice are recorded, not sent"
    assert trade.kind is TradeKind.PAPER and trade.signal_id == signal_id
    assert paper_fill is not None
    assert (paper_fill.client_order_id, paper_fill.quantity, paper_fill.price, paper_fill.filled_at) == (
        signal_id,
        trade.quantity,
        trade.entry_price,
        trade.entry_time,
    )
    assert (kept.client_order_id, kept.broker, kept.symbol, kept.side) == (signal_id, "oanda", "GBPUSD", Side.LONG)
    assert kept.quantity == trade.quantity and kept.refusal is None
    assert (kept.method, kept.path) == (HTTPMethod.POST, f"/v3/accounts/{oanda.account_id}/orders")
    assert kept.body_json is not None
    logged = [r.getMessage() for r in caplog.records if r.name == "bot.brokers.shadow"]
    assert any(f"order {signal_id} NOT sent to oanda: POST {kept.path} {kept.body_json}" in m for m in logged)
    assert oanda.token not in caplog.text

    # The same signal with shadow mode off: now the order really goes to OANDA, and it is the recorded one.
    async with bot(oanda_settings(tmp_path / "live.db", oanda)) as rt:
        assert await approved_signal(rt) == signal_id
        [live] = await rt.store.open_trades()
    assert live.kind is TradeKind.LIVE and live.quantity == kept.quantity
    [posted] = oanda.requests_for(Route.ORDERS)
    assert (posted.method, posted.path) == (kept.method, kept.path)
    assert posted.body == json.loads(kept.body_json, parse_float=Decimal)
    assert json.dumps(posted.body) == kept.body_json  # the very text, key order included
    assert posted.body is not None and posted.body["order"]["clientExtensions"]["id"] == signal_id

    # `tradebot shadow` shows the recorded request beside the paper fill.
    shown = await asyncio.to_thread(tradebot, tmp_path, "shadow", db=shadow_db)
    assert shown.returncode == 0, shown.stderr
    assert f"GBPUSD long {kept.quantity}  signal {signal_id}" in shown.stdout
    assert f"would send to oanda: POST /v3/accounts/{oanda.account_id}/orders" in shown.stdout
    assert f"body: {kept.body_json}" in shown.stdout
    assert f"paper fill: {trade.quantity} @ {trade.entry_price}" in shown.stdout
    as_json = await asyncio.to_thread(tradebot, tmp_path, "shadow", "--json", "--limit", "5", db=shadow_db)
    assert as_json.returncode == 0, as_json.stderr
    [item] = json.loads(as_json.stdout, parse_float=Decimal)
    assert item["body"] == posted.body and item["method"] == "POST" and item["path"] == posted.path
    assert item["paper_fill"]["price"] == str(trade.entry_price)
    assert item["paper_fill"]["quantity"] == str(trade.quantity)
    assert oanda.token not in shown.stdout + shown.stderr + as_json.stdout + as_json.stderr


async def test_placing_again_keeps_the_first_record_and_the_first_fill(tmp_path: Path) -> None:
    gbpusd = default_instrument("GBPUSD")
    clock = FixedClock(AS_OF)
    paper = PaperBroker(CsvProvider(require_market_dir()), {"GBPUSD": gbpusd}, clock, CostModel())
    settings = OandaSettings("101-004-1234567-001", SecretStr("not-a-real-token-0123456789"))
    request = OrderRequest("sig-s", "GBPUSD", Side.SHORT, Decimal("0.25"), Decimal("1.36"), Decimal("1.34"))
    async with await SqliteStore.open(tmp_path / "bot.db") as store:
        shadow = ShadowBroker(paper, partial(market_order, settings), store, clock, target="oanda")
        first = await shadow.place_order(gbpusd, request)
        assert await shadow.place_order(gbpusd, request) == first
        [(kept, fill)] = await store.shadow_orders()
    assert fill is None  # no order intent in this store: the desk records fills, not the broker
    assert kept == ShadowOrder(
        client_order_id="sig-s",
        broker="oanda",
        symbol="GBPUSD",
        side=Side.SHORT,
        quantity=Decimal("0.25"),
        created_at=AS_OF,
        method=HTTPMethod.POST,
        path="/v3/accounts/101-004-1234567-001/orders",
        body_json=market_order(settings, gbpusd, request).content,
        refusal=None,
    )
    assert kept.body_json is not None and '"units": "-25000"' in kept.body_json
    assert shadow.name == "paper" and await shadow.trade_exit("sig-s") is None


async def test_an_order_oanda_could_not_take_is_recorded_with_the_reason_and_still_fills_on_paper(
    tmp_path: Path,
) -> None:
    aapl = default_instrument("AAPL")
    clock = FixedClock(AS_OF)
    paper = PaperBroker(CsvProvider(require_market_dir()), {"AAPL": aapl}, clock, CostModel())
    settings = OandaSettings("101-004-1234567-001", SecretStr("not-a-real-token-0123456789"))
    async with await SqliteStore.open(tmp_path / "bot.db") as store:
        shadow = ShadowBroker(paper, partial(market_order, settings), store, clock, target="oanda")
        fill = await shadow.place_order(aapl, OrderRequest("sig-a", "AAPL", Side.LONG, Decimal("3")))
        rows = await store.shadow_orders()
    assert fill.quantity == Decimal("3")
    [(kept, _)] = rows
    assert (kept.method, kept.path, kept.body_json) == (None, None, None)
    assert kept.refusal == "AAPL has no OANDA instrument name; add it to the OANDA symbol map"
    assert "oanda would refuse: AAPL has no OANDA instrument name" in shadow_text(rows)


async def test_newest_shadow_orders_come_first_within_the_limit(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "bot.db") as store:
        for minute in range(3):
            at = AS_OF + timedelta(minutes=minute)
            order = ShadowOrder(f"sig-{minute}", "oanda", "EURUSD", Side.LONG, Decimal("0.1"), at, refusal="no")
            assert await store.record_shadow_order(order)
        assert not await store.record_shadow_order(order)
        newest = await store.shadow_orders(limit=2)
    assert [o.client_order_id for o, _ in newest] == ["sig-2", "sig-1"]


def test_a_shadow_order_is_a_request_or_a_refusal_never_both() -> None:
    kept = partial(ShadowOrder, "sig-x", "oanda", "EURUSD", Side.LONG, Decimal(1), AS_OF)
    with pytest.raises(ValueError, match="exactly one of the request and the refusal"):
        kept()
    with pytest.raises(ValueError, match="exactly one of the request and the refusal"):
        kept(method=HTTPMethod.POST, path="/v3/x", body_json="{}", refusal="no")
    with pytest.raises(ValueError, match="method, path and body are set together"):
        kept(method=HTTPMethod.POST)
    with pytest.raises(ValueError, match="body must be a JSON object"):
        kept(method=HTTPMethod.POST, path="/v3/x", body_json="[]")


def test_the_shadow_command_without_a_database_says_so(tmp_path: Path) -> None:
    done = tradebot(tmp_path, "shadow", db=tmp_path / "none.db")
    assert done.returncode == 0, done.stderr
    assert "no shadow orders" in done.stdout
    assert not (tmp_path / "none.db").exists()
