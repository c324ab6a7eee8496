"""Signal charts: what they show, drawn in the worker process with a deadline, and text when they cannot be drawn."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from bot.charts.spec import ChartSpec, Level, LevelKind
from bot.charts.worker import ChartWorker
from bot.config import load_settings
from bot.services.charts import SignalCharts, signal_chart
from bot.services.configure import watchlist
from data.market.csv_provider import CsvProvider
from engine.bars import Bars, to_nanos
from engine.indicators import MarketContext
from engine.pipeline import scan_instrument
from tests.support import require_market_dir

PNG = b"\x89PNG\r\n\x1a\n"


def small_spec(**changes: object) -> ChartSpec:
    n = 30
    close = 100 + np.cumsum(np.sin(np.arange(n)))
    spec = ChartSpec(
        title="TEST 1h · test long",
        timezone="Europe/London",
        time=(np.arange(n, dtype=np.int64) + 480_000) * 3_600_000_000_000,
        open=close - 0.2,
        high=close + 0.5,
        low=close - 0.5,
        close=close,
        levels=(Level(LevelKind.ENTRY, "entry", float(close[-1])), Level(LevelKind.STOP, "stop", float(close[-1] - 2))),
        marked=n - 1,
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


@pytest.fixture
def worker() -> ChartWorker:
    made = ChartWorker()
    yield made  # type: ignore[misc]
    made.close()


async def test_a_chart_is_a_png_drawn_in_another_process(worker: ChartWorker) -> None:
    png = await worker.render(small_spec())
    assert png is not None and png.startswith(PNG) and len(png) > 20_000


async def test_a_chart_past_its_deadline_is_none_and_the_next_one_is_drawn(worker: ChartWorker) -> None:
    worker.deadline = 0.001  # the worker has not even started
    assert await worker.render(small_spec()) is None
    worker.deadline = 30.0
    png = await worker.render(small_spec())
    assert png is not None and png.startswith(PNG)


async def test_a_chart_that_cannot_be_drawn_is_none(worker: ChartWorker) -> None:
    assert await worker.render(small_spec(timezone="Nowhere/Atlantis")) is None


def test_a_chart_checks_what_it_is_given() -> None:
    with pytest.raises(ValueError, match="overlay EMA20 has 2 values, expected 30"):
        small_spec(overlays=(("EMA20", np.ones(2)),))
    with pytest.raises(ValueError, match=r"marked bar must be within 0\.\.29, was 30"):
        small_spec(marked=30)
    with pytest.raises(ValueError, match="price must be positive and finite"):
        Level(LevelKind.STOP, "stop", float("nan"))


async def test_a_signal_chart_shows_its_strategys_lines_and_levels_from_the_bars_a_live_scan_had(
    worker: ChartWorker, tmp_path: Path
) -> None:
    market = require_market_dir()
    settings = load_settings({}, data_source=f"csv:{market}", db_path=tmp_path / "bot.db")
    item = next(w for w in watchlist(settings) if w.instrument.symbol == "GBPUSD")
    frame = CsvProvider(market).fetch(item.instrument, datetime(2025, 6, 12, 9, 40, tzinfo=UTC), 3000)
    bars = Bars.from_frame(frame, item.instrument.interval)
    strategy = next(s for s in item.strategies if s.name == "trend_pullback")
    ctx = MarketContext(item.instrument, bars, item.calendar)
    [scored] = scan_instrument(ctx, [strategy], settings.engine_config(), None, np.array([len(bars) - 1])).setups
    setup = scored.setup
    spec = SignalCharts([item], worker).signal_spec(setup, bars)
    assert spec is not None
    assert [label for label, _ in spec.overlays] == ["EMA20", "4h EMA50", "4h EMA200"]
    assert [(lv.kind, lv.price) for lv in spec.levels] == [
        (LevelKind.ENTRY, float(setup.entry)),
        (LevelKind.STOP, float(setup.stop)),
        (LevelKind.TARGET, float(setup.target)),
    ]
    assert spec.marked == len(spec.time) - 1 and int(spec.time[-1]) == to_nanos(setup.bar_time)
    assert len(spec.time) == 90 and spec.timezone == "America/New_York" and spec.price_format == ".5f"
    png = await worker.render(spec)
    assert png is not None and png.startswith(PNG)
    assert SignalCharts([item], worker).signal_spec(setup, bars.head(len(bars) - 1)) is None  # its bar is not there
    # the bot has the worker build the chart too (its lines are TA-Lib's): the same picture
    assert await worker.draw("of the signal", signal_chart, item, setup, bars) == png
    assert await worker.draw("of the signal", signal_chart, item, setup, bars.head(len(bars) - 1)) is None


def _broken_chart(symbol: str) -> ChartSpec:
    raise ValueError(f"no chart of {symbol}")


async def test_a_chart_whose_building_fails_in_the_worker_is_none_and_says_why(
    worker: ChartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    assert await worker.draw("of EURUSD", _broken_chart, "EURUSD") is None
    assert "chart of EURUSD could not be drawn (ValueError: no chart of EURUSD); sent as text" in caplog.text

    def local() -> ChartSpec:
        return small_spec()

    assert await worker.draw("of the test", local) is None  # cannot cross to the worker: no chart, no exception
    assert await worker.render(small_spec()) is not None  # the worker still draws


async def test_a_chart_with_nothing_but_candles_is_drawn(worker: ChartWorker) -> None:
    bare = small_spec(levels=(), marked=None)  # e.g. /chart of a symbol with no strategy lines and no position
    png = await worker.render(bare)
    assert png is not None and png.startswith(PNG)
