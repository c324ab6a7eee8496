"""The real bot runtime trading GBPUSD against the fake OANDA server, for the live and shadow tests.

`open_runtime` is the composition root `tradebot run` uses, so these tests go through the same wiring: the
configured broker, the desk, the position monitor. Prices are the shared market data at 2025-06-12 09:40 UTC,
when trend_pullback signals a GBPUSD long (entry 1.35651, stop 1.35347, target 1.36259).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from bot.bootstrap import open_runtime
from bot.config import Settings, load_settings
from bot.ops.clock import BotClock
from bot.services.desk import OutcomeKind
from bot.services.runtime import BotRuntime
from engine.domain import SignalStatus
from tests.fakes.oanda_server import FakeOanda
from tests.support import require_market_dir

AS_OF: Final = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)
TRADER: Final = 42
GBPUSD: Final[dict[str, str]] = {
    "symbol": "GBPUSD",
    "asset_class": "fx",
    "interval": "1h",
    "tick_size": "0.00001",
    "pip_size": "0.0001",
    "lot_size": "0.01",
    "contract_size": "100000",
    "calendar": "FX",
    "spread": "0.00012",
}


def oanda_settings(db: Path, oanda: FakeOanda, **broker: Any) -> Settings:
    """Settings of a bot trading GBPUSD at the fake OANDA server (`broker` overrides `[broker]` keys)."""
    return load_settings(
        {},
        db_path=db,
        data_source=f"csv:{require_market_dir()}",
        watchlist=[GBPUSD],
        TELEGRAM_ALLOWED_USERS=str(TRADER),
        OANDA_TOKEN=oanda.token,
        broker={
            "kind": "oanda",
            "oanda_account_id": oanda.account_id,
            "oanda_base_url": oanda.base_url,
            "timeout_seconds": 5,
            **broker,
        },
    )


@asynccontextmanager
async def bot(settings: Settings) -> AsyncIterator[BotRuntime]:
    """The runtime of `settings` with its clock at AS_OF."""
    async with open_runtime(settings, BotClock(AS_OF)) as runtime:
        yield runtime


async def offered_signal(runtime: BotRuntime) -> str:
    """Run one analysis and return the id of the one signal it offered (pending approval)."""
    _, decisions = await runtime.analyse()
    [signal_id] = [d.signal_id for d in decisions if d.status is SignalStatus.PENDING]
    return signal_id


async def approved_signal(runtime: BotRuntime) -> str:
    """Offer the signal and approve it as the trader; return its id (the order's client id)."""
    signal_id = await offered_signal(runtime)
    outcome = await runtime.desk.approve(signal_id, TRADER)
    assert outcome.kind is OutcomeKind.DONE, outcome.message
    return signal_id


async def chat_texts(runtime: BotRuntime) -> list[str]:
    """Every text the bot queued for the chat, oldest first."""
    items = await runtime.store.due_messages(runtime.clock.now() + timedelta(days=3650), limit=1000)
    return [str(i.payload.get("text", "")) for i in items]
