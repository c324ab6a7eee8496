"""The analysis run end to end: real CSV files, the real engine and a real SQLite file.

One bad symbol (missing file, corrupt file, stale feed, a strategy that crashes) never aborts the run:
each is recorded with its reason, the others are evaluated, and the run is persisted with its counts.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.ops.clock import WallClock
from bot.services.scan import BarRules, ScanService, WatchItem
from data.market.csv_provider import CsvProvider
from data.sqlite.store import SqliteStore
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.domain import RejectionKind, Side, SignalStatus
from engine.indicators import MarketContext
from engine.pipeline import EngineConfig
from engine.ports import FixedClock
from engine.quality import Component, QualityScorer, QualityWeights
from engine.strategy import REGISTRY, SignalArrays, Strategy, StrategyParams, strategy_names
from tests.support import require_market_dir

AS_OF = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)


class Exploding(Strategy[StrategyParams]):
    """A strategy with a bug: raises on every call."""

    name = "exploding"
    params_type = StrategyParams

    def signals(self, ctx: MarketContext) -> SignalArrays:
        raise ZeroDivisionError("strategy bug")

    def explain(self, ctx: MarketContext, i: int, side: Side) -> tuple[str, ...]:
        return ()


def all_strategies() -> tuple[Strategy[Any], ...]:
    return tuple(REGISTRY[name]() for name in strategy_names())


def item(symbol: str, *strategies: Strategy[Any]) -> WatchItem:
    instrument = default_instrument(symbol)
    runs = strategies or all_strategies()
    return WatchItem(instrument, get_calendar(instrument.calendar), tuple(s for s in runs if s.applies_to(instrument)))


@pytest.fixture
def market_copy(tmp_path: Path) -> Path:
    """A data folder with a few real files, one corrupt file and one missing symbol."""
    source = require_market_dir()
    folder = tmp_path / "market"
    folder.mkdir()
    for name in ("GBPUSD_1h.csv", "XAUUSD_1h.csv", "HDFCBANK_5m.csv", "ICICIBANK_5m.csv", "SBIN_5m.csv"):
        shutil.copy(source / name, folder / name)
    (folder / "TCS_5m.csv").write_text("timestamp,open,high,low,close,volume\n2025-01-01T03:45:00Z,abc,1,1,1,1\n")
    return folder


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    async with await SqliteStore.open(tmp_path / "var" / "tradebot.db") as opened:
        yield opened


def service(folder: Path, store: SqliteStore | None, watch: list[WatchItem]) -> ScanService:
    return ScanService(CsvProvider(folder), store, watch, EngineConfig(), BarRules(), FixedClock(AS_OF))


async def test_bad_symbols_are_recorded_and_the_run_goes_on(market_copy: Path, store: SqliteStore) -> None:
    watch = [item(s) for s in ("GBPUSD", "XAUUSD", "HDFCBANK", "ICICIBANK", "TCS", "INFY")]
    report = await service(market_copy, store, watch).scan(AS_OF)

    assert report.symbols == ("GBPUSD", "XAUUSD", "HDFCBANK", "ICICIBANK", "TCS", "INFY")
    assert report.evaluated == 4
    symbol_reasons = {r.symbol: r.reason for r in report.rejections if r.kind is RejectionKind.SYMBOL}
    assert "abc" in symbol_reasons["TCS"] and "TCS_5m.csv" in symbol_reasons["TCS"]
    assert symbol_reasons["INFY"].startswith("no data: no data file for INFY 5m")
    found = {(s.setup.symbol, s.setup.strategy, s.setup.side) for s in report.setups}
    assert ("GBPUSD", "trend_pullback", Side.LONG) in found
    assert ("XAUUSD", "trend_pullback", Side.LONG) in found

    summary = await store.run(report.run_id or 0)
    assert summary is not None and summary.finished_at is not None
    assert summary.setups == len(report.setups)
    assert summary.rejected_symbols == 2
    stored = await store.setups_for_run(report.run_id or 0)
    assert {(s.setup.symbol, s.setup.strategy) for s, _ in stored} == {(a, b) for a, b, _ in found}
    assert all(status is SignalStatus.NEW for _, status in stored)
    assert {r.symbol for r in await store.rejections_for_run(report.run_id or 0)} >= {"TCS", "INFY"}


async def test_a_crashing_strategy_is_an_error_of_that_symbol_only(market_copy: Path, store: SqliteStore) -> None:
    watch = [item("GBPUSD", Exploding()), item("XAUUSD")]
    report = await service(market_copy, store, watch).scan(AS_OF)

    assert report.errors == ("GBPUSD: evaluation failed: ZeroDivisionError: strategy bug",)
    assert [s.setup.symbol for s in report.setups] == ["XAUUSD"]
    summary = await store.run(report.run_id or 0)
    assert summary is not None and summary.errors == report.errors


async def test_stale_feed_rejects_the_symbol_with_its_reason(market_copy: Path) -> None:
    watch = [item("SBIN")]
    later = datetime(2026, 1, 14, 6, 0, tzinfo=UTC)  # the file ends 2025-12-31
    report = await service(market_copy, None, watch).scan(later)
    (rejection,) = report.rejections
    assert rejection.kind is RejectionKind.SYMBOL
    assert rejection.reason.startswith("stale feed: last bar closed 2025-12-31T10:00Z")


async def test_as_of_hides_later_bars_exactly_like_a_file_that_ends_there(market_copy: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for name in ("GBPUSD_1h.csv", "HDFCBANK_5m.csv"):
        lines = (market_copy / name).read_text().splitlines()
        keep = [lines[0]] + [ln for ln in lines[1:] if ln[:20] <= "2025-06-12T09:35:00Z"]
        (truncated / name).write_text("\n".join(keep) + "\n")
    watch = [item("GBPUSD"), item("HDFCBANK")]
    with_future = await service(market_copy, None, watch).scan(AS_OF)
    without = await service(truncated, None, watch).scan(AS_OF)
    assert with_future.setups == without.setups
    assert with_future.setups, "this instant has setups on the real data"


async def test_the_same_setup_seen_twice_is_stored_once(market_copy: Path, store: SqliteStore) -> None:
    scan = service(market_copy, store, [item("GBPUSD"), item("XAUUSD")])
    first = await scan.scan(AS_OF)
    second = await scan.scan(AS_OF)
    assert first.setups == second.setups and first.run_id != second.run_id
    ids = {s.setup.signal_id for s in first.setups}
    assert {s.setup.signal_id for s, _ in await store.setups_for_run(second.run_id or 0)} == ids


async def test_selection_by_symbol_and_strategy(market_copy: Path) -> None:
    scan = service(market_copy, None, [item("GBPUSD"), item("HDFCBANK")])
    report = await scan.scan(AS_OF, symbols=["HDFCBANK"], strategies=["pattern_reversal"])
    assert report.symbols == ("HDFCBANK",) and report.strategies == ("pattern_reversal",)
    with pytest.raises(ValueError, match="unknown symbol\\(s\\) NOPE; watchlist: GBPUSD, HDFCBANK"):
        scan.select(["NOPE"])
    with pytest.raises(ValueError, match="unknown or disabled strategy\\(ies\\) martingale"):
        scan.select(None, ["martingale"])


async def test_without_as_of_the_clock_decides_what_is_visible(market_copy: Path) -> None:
    scan = ScanService(CsvProvider(market_copy), None, [item("GBPUSD")], EngineConfig(), BarRules(), WallClock())
    report = await scan.scan()
    assert report.as_of.year >= 2026 and report.as_of.tzinfo is UTC
    (rejection,) = report.rejections
    assert rejection.reason.startswith("stale feed")  # the shared file ended long before today


async def test_insufficient_history_is_reported_per_strategy(market_copy: Path) -> None:
    short = market_copy / "GBPUSD_1h.csv"
    lines = short.read_text().splitlines()
    short.write_text("\n".join(lines[:601]) + "\n")
    last_open = datetime.fromisoformat(lines[600].split(",")[0].replace("Z", "+00:00"))
    report = await service(market_copy, None, [item("GBPUSD")]).scan(last_open + timedelta(hours=1))
    reasons = [r.reason for r in report.rejections if r.strategy == "trend_pullback"]
    assert reasons and reasons[0].startswith("insufficient history for trend_pullback: 600 bars, needs")


class RecordingProvider(CsvProvider):
    """The real CSV provider, remembering how many bars each fetch asked for."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.asked: dict[str, int] = {}

    def fetch(self, instrument: Any, end: datetime, bars: int) -> Any:
        self.asked[instrument.symbol] = bars
        return super().fetch(instrument, end, bars)


async def test_each_symbol_is_fetched_with_the_history_its_strategies_and_the_score_need() -> None:
    provider = RecordingProvider(require_market_dir())
    items = [item("EURUSD"), item("RELIANCE"), item("SPY", REGISTRY["pattern_reversal"]())]
    service = ScanService(provider, None, items, EngineConfig(), BarRules(history_bars=2000), FixedClock(AS_OF))
    await service.scan()
    # The score's EMA200 of the higher timeframe decides: 4h bins of 1h bars, 1h bins of 5m bars.
    assert provider.asked == {"EURUSD": 9092, "RELIANCE": 27276, "SPY": 27276}
    lean = EngineConfig(scorer=QualityScorer(QualityWeights({Component.REWARD_RISK: 1.0})))
    service = ScanService(provider, None, items, lean, BarRules(history_bars=2000), FixedClock(AS_OF))
    assert [service.history_bars(i) for i in items] == [9092, 2000, 2000]  # trend_pullback's own; the floor
    assert service.history_bars(items[1]) >= REGISTRY["defining_order"]().history(items[1].instrument)


async def test_a_scan_on_less_history_than_its_indicators_need_says_so(market_copy: Path) -> None:
    watch = [item("GBPUSD"), item("XAUUSD")]
    end = datetime(2026, 7, 9, 18, tzinfo=UTC)
    early = await service(market_copy, None, watch).scan(AS_OF)
    late = await ScanService(CsvProvider(market_copy), None, watch, EngineConfig(), BarRules(), FixedClock(end)).scan(
        end
    )
    for outcome in early.outcomes:  # the files start in late 2024: 2025-06-12 has under 9,092 hourly bars behind it
        [note] = [n for n in outcome.notes if n.startswith("short history")]
        assert re.fullmatch(r"short history: [\d,]+ of the 9,092 bars the strategies and the score need .*", note)
    assert not [n for o in late.outcomes for n in o.notes if n.startswith("short history")]  # 9,998 bars by then
