"""Drift compares a baseline only with the trades of the very system it validated, in a real SQLite file."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import DriftSettings
from bot.ops.clock import WallClock
from bot.services.drift_watch import DriftWatch
from bot.services.systems import SystemBook
from bot.telegram.notifier import Notifier
from data.sqlite.store import SqliteStore
from engine.domain import Interval
from engine.systems import SystemSpec
from tests.builders import baseline_for, gbpusd_trade, record_system_trades

T0 = datetime(2025, 6, 1, tzinfo=UTC)
TRADED = SystemSpec("trend_pullback", "GBPUSD", Interval.H1, {"trend_slow": 200}, {"costs": {}}, "code1")
RETUNED = replace(TRADED, params={"trend_slow": 225})


async def test_only_trades_of_the_validated_system_are_compared_with_its_baseline(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "bot.db") as store:
        await store.save_baseline(baseline_for(TRADED, T0))
        await record_system_trades(
            store, TRADED, [gbpusd_trade(n, n % 10 == 0, T0 + timedelta(days=1 + n)) for n in range(20)]
        )  # 2 of 20 won
        await record_system_trades(
            store, RETUNED, [gbpusd_trade(100 + n, True, T0 + timedelta(days=101 + n)) for n in range(20)]
        )  # other params
        notifier = Notifier(store, (1,), {}, WallClock())

        rows = await DriftWatch(store, notifier, WallClock(), DriftSettings(), systems=SystemBook([TRADED])).table()
        [pair, overall] = rows
        assert (pair.symbol, pair.report.n, pair.report.live_win_rate) == ("GBPUSD", 20, 0.1)
        assert overall.report.n == 20

        # Trading the retuned parameters: the baseline is of another system, so nothing is compared with it.
        assert (
            await DriftWatch(store, notifier, WallClock(), DriftSettings(), systems=SystemBook([RETUNED])).table() == []
        )
