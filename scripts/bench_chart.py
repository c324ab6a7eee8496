"""Benchmark signal charts: how long one takes, and that drawing it never stalls the bot's event loop.

A GBPUSD 1h signal chart (the shared data, 90 candles, three EMA lines, entry/stop/target) is drawn N times in
the chart worker process, as the running bot draws each signal's chart; meanwhile a ticker on the event loop
measures how late it wakes every millisecond (the delay a button press would see). Reference in the same run: the
same chart drawn N times on the event loop's own thread (what rendering without the worker would do to a click).
Runs alternate A B A B; medians.

Goal: the loop's worst wake-up delay while the worker draws stays under 10 ms (a click is answered in
milliseconds), and a chart takes well under the signal's deadline (20 s).

    .venv/bin/python scripts/bench_chart.py [--runs 10] [--data ../shared/data/market]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.charts.worker import DEADLINE_SECONDS, ChartWorker  # noqa: E402
from bot.config import load_settings  # noqa: E402
from bot.services.charts import SignalCharts  # noqa: E402
from bot.services.configure import watchlist  # noqa: E402
from data.market.csv_provider import CsvProvider  # noqa: E402
from engine.bars import Bars, to_nanos  # noqa: E402
from engine.indicators import MarketContext  # noqa: E402
from engine.pipeline import scan_instrument  # noqa: E402

GOAL_LAG_MS = 10.0


async def ticker(stop: asyncio.Event, lags: list[float]) -> None:
    """Sleep 1 ms at a time and record how late each wake-up came (ms)."""
    while not stop.is_set():
        asked = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - asked) * 1000 - 1.0)


async def measure(draw: object, spec: object) -> tuple[float, float]:
    """(seconds to draw, worst loop delay in ms) for one chart drawn by `draw`."""
    stop, lags = asyncio.Event(), []  # type: ignore[var-annotated]
    tick = asyncio.create_task(ticker(stop, lags))
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    png = await draw(spec)  # type: ignore[operator]
    took = time.perf_counter() - started
    stop.set()
    await tick
    assert png, "the chart was not drawn"
    return took, max(lags, default=0.0)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/market")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no market data folder at {args.data}", file=sys.stderr)
        return 2
    settings = load_settings({}, data_source=f"csv:{args.data}")
    item = next(w for w in watchlist(settings) if w.instrument.symbol == "GBPUSD")
    frame = CsvProvider(args.data).fetch(item.instrument, datetime.now(UTC), 5000)
    bars = Bars.from_frame(frame, item.instrument.interval)
    strategy = next(s for s in item.strategies if s.name == "trend_pullback")
    ctx = MarketContext(item.instrument, bars, item.calendar)
    fired = strategy.signals(ctx).fired()
    setup = scan_instrument(ctx, [strategy], settings.engine_config(), None, fired[-40:]).setups[-1].setup
    live = bars.head(int((bars.time <= to_nanos(setup.bar_time)).sum()))
    worker = ChartWorker()
    charts = SignalCharts([item], worker)
    spec = charts.signal_spec(setup, live)
    assert spec is not None

    async def in_loop(chart: object) -> bytes:
        from bot.charts.render import render_png  # noqa: PLC0415

        return render_png(chart)  # type: ignore[arg-type]

    try:
        await worker.warm()
        await in_loop(spec)  # both warm: imports and fonts loaded
        worker_runs, loop_runs = [], []
        for _ in range(args.runs):
            worker_runs.append(await measure(worker.render, spec))
            loop_runs.append(await measure(in_loop, spec))
    finally:
        worker.close()
    draw_s = statistics.median(t for t, _ in worker_runs)
    lag_ms = statistics.median(lag for _, lag in worker_runs)
    worst_ms = max(lag for _, lag in worker_runs)
    ref_ms = statistics.median(lag for _, lag in loop_runs)
    print(f"chart drawn in the worker: median {draw_s * 1000:.0f} ms (deadline {DEADLINE_SECONDS:.0f} s)")
    print(f"event-loop delay while the worker draws: median of worst {lag_ms:.1f} ms, worst {worst_ms:.1f} ms")
    print(f"reference, drawn on the loop's thread: median of worst {ref_ms:.1f} ms")
    print(f"ratio (worker / on the loop): {lag_ms / max(ref_ms, 1e-9):.3f}")
    ok = worst_ms < GOAL_LAG_MS and draw_s < DEADLINE_SECONDS / 4
    goal = f"worst loop delay < {GOAL_LAG_MS:.0f} ms and a chart well within its deadline"
    print(f"{'PASS' if ok else 'FAIL'}: goal {goal}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
