"""Validation results and baselines are versioned per strategy x instrument in a real SQLite file."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from data.sqlite.store import SqliteStore
from engine.systems import Baseline, ScoreEdge

T0 = datetime(2025, 6, 12, tzinfo=UTC)
BASE = Baseline(
    strategy="trend_pullback",
    symbol="EURUSD",
    interval="1h",
    params={"atr_stop_mult": 1.5, "trend_interval": "4h"},
    data_source="csv:/data",
    data_from=T0 - timedelta(days=400),
    data_to=T0,
    passed=True,
    reasons=(),
    metrics={"trades": 48, "profit_factor": 1.41, "expectancy_r": 0.18, "sharpe": None},
    r_multiples=(2.0, -1.0, -1.0, 1.97, -1.02),
    created_at=T0,
)


async def test_versions_increase_and_the_latest_is_current(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "b.db") as store:
        assert await store.latest_baselines() == []
        assert await store.save_baseline(BASE) == 1
        failed = replace(BASE, passed=False, reasons=("profit factor 0.9 < 1.2",), created_at=T0 + timedelta(days=7))
        assert await store.save_baseline(failed) == 2
        assert await store.save_baseline(replace(BASE, symbol="GBPUSD")) == 1
    async with await SqliteStore.open(tmp_path / "b.db") as store:
        latest = {(b.strategy, b.symbol): b for b in await store.latest_baselines()}
        assert latest[("trend_pullback", "EURUSD")] == replace(failed, version=2)
        assert latest[("trend_pullback", "GBPUSD")].passed and latest[("trend_pullback", "GBPUSD")].version == 1
        assert latest[("trend_pullback", "GBPUSD")].r_multiples == BASE.r_multiples


async def test_a_baseline_with_a_backwards_range_is_refused(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "b.db") as store:
        try:
            await store.save_baseline(replace(BASE, data_to=BASE.data_from - timedelta(days=1)))
        except ValueError as exc:
            assert "before it starts" in str(exc)
        else:
            raise AssertionError("a backwards data range was stored")
        assert await store.latest_baselines() == []


async def test_each_systems_newest_baseline_is_kept_with_its_fingerprint_and_system(tmp_path: Path) -> None:
    edge = ScoreEdge(70, 0.21, 0.04)
    first = replace(BASE, fingerprint="a" * 16, system={"params": {"x": 1}}, oos_from=T0 - timedelta(days=100))
    async with await SqliteStore.open(tmp_path / "b.db") as store:
        await store.save_baseline(first)
        await store.save_baseline(replace(first, score=edge, created_at=T0 + timedelta(days=1)))
        await store.save_baseline(replace(first, fingerprint="b" * 16, passed=False, reasons=("PF 0.9 < 1.2",)))
        await store.save_baseline(replace(BASE, symbol="GBPUSD"))  # stored before fingerprints: fingerprint ''
    async with await SqliteStore.open(tmp_path / "b.db") as store:
        every = {(b.symbol, b.fingerprint): b for b in await store.baselines()}
        latest = await store.latest_baselines()
    assert set(every) == {("EURUSD", "a" * 16), ("EURUSD", "b" * 16), ("GBPUSD", "")}
    newest_a = every[("EURUSD", "a" * 16)]
    assert newest_a.version == 2 and newest_a.score == edge and newest_a.system == {"params": {"x": 1}}
    assert newest_a.oos_from == T0 - timedelta(days=100)
    assert [b.version for b in latest if b.symbol == "EURUSD"] == [3]  # the pair's newest, of any system
