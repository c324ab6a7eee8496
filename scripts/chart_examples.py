"""Draw example signal charts from the shared market data into docs/ (as the chat shows them).

For each system, the last setup its strategy fired in the data is charted over the bars a live scan would have
had at that moment (nothing after the signal bar).

    .venv/bin/python scripts/chart_examples.py [--data ../shared/data/market] [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.charts.worker import ChartWorker
from bot.config import load_settings
from bot.services.charts import SignalCharts
from bot.services.configure import watchlist
from data.market.csv_provider import CsvProvider
from engine.bars import Bars, to_nanos
from engine.indicators import MarketContext
from engine.pipeline import scan_instrument

EXAMPLES = (("GBPUSD", "trend_pullback"), ("XAUUSD", "trend_pullback"), ("RELIANCE", "defining_order"))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/market")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no market data folder at {args.data}", file=sys.stderr)
        return 2
    settings = load_settings({}, data_source=f"csv:{args.data}")
    items = {w.instrument.symbol: w for w in watchlist(settings)}
    provider = CsvProvider(args.data)
    worker = ChartWorker()
    charts = SignalCharts(list(items.values()), worker)
    engine = settings.engine_config()
    try:
        for symbol, name in EXAMPLES:
            item = items.get(symbol)
            strategy = None if item is None else next((s for s in item.strategies if s.name == name), None)
            if item is None or strategy is None:
                print(f"{symbol}: {name} is not configured for it; skipped")
                continue
            frame = provider.fetch(item.instrument, datetime.now(UTC), 5000)
            bars = Bars.from_frame(frame, item.instrument.interval)
            ctx = MarketContext(item.instrument, bars, item.calendar)
            fired = strategy.signals(ctx).fired()
            scan = scan_instrument(ctx, [strategy], engine, None, fired[-40:])
            if not scan.setups:
                print(f"{symbol}: no valid setup of {name} in the data; skipped")
                continue
            setup = scan.setups[-1].setup
            live = bars.head(int((bars.time <= to_nanos(setup.bar_time)).sum()))  # what a live scan had
            spec = charts.signal_spec(setup, live)
            png = None if spec is None else await worker.render(spec)
            if png is None:
                print(f"{symbol}: the chart could not be drawn")
                continue
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"chart-{symbol.lower()}-{name.replace('_', '-')}.png"
            path.write_bytes(png)
            what = f"{setup.side.value} {setup.entry} stop {setup.stop} at {setup.bar_time}"
            print(f"{path} ({len(png) // 1024} KiB): {what}")
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
