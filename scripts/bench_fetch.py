"""Benchmark the Yahoo source's work in the running bot per analysis run: its bar cache, with a stand-in download.

The bot fetches every watchlist symbol on each run in its own process (threads that share the GIL with the event
loop, so a click waits behind this work). With the Yahoo source each fetch loads the symbol's cache file, downloads
the bars since its last one, merges them and saves the file. The cache holds the history the strategies and the
score need (9,092 1h bars, 27,276 5m bars), so writing the whole file on every run costs tens of milliseconds of
CPU per symbol, and more as the cache grows.

Setup: the default watchlist (16 instruments: FX, gold and crypto 1h; US and NSE 5m), each cache file seeded with
its shared file's bars up to `--start` (months of history, as a bot that has been running has), and a stand-in
for `yfinance.download` that answers from the shared files in Yahoo's shape (`tests.fakes.yfinance_frames`), so
no network is involved: what is measured is the bot's own work. `--runs` runs, 5 minutes apart, each fetching
every symbol with the history the scan asks for (`ScanService.history_bars`); CPU seconds of this process
(`time.process_time`) per run.

Figure: the cache as it is (the newest bars held in memory, each file written at most once an hour: a monotonic
clock moved 5 minutes a run). Reference, in turn (A B A B ..., each on its own copy of the cache): the same fetches
writing every file on every run (`cache_save_seconds=0`, how the cache worked before). Both serve the same bars
(checked). Goal: at most 10 ms of CPU per symbol per run on average (a quiet click's whole budget).

    .venv/bin/python scripts/bench_fetch.py [--runs 36] [--start 2025-09-01T00:00Z] [--market-dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import load_settings  # noqa: E402
from bot.services.configure import bar_rules, watchlist  # noqa: E402
from bot.services.scan import ScanService  # noqa: E402
from data.market.cache import BarCache  # noqa: E402
from data.market.csv_provider import read_bar_csv, write_bar_csv  # noqa: E402
from data.market.yfinance_provider import YFinanceProvider  # noqa: E402
from engine.domain import Instrument  # noqa: E402
from engine.ports import FixedClock  # noqa: E402
from tests.fakes.yfinance_frames import yahoo_frame  # noqa: E402

GOAL_MS_PER_SYMBOL = 10.0
RUN_EVERY = timedelta(minutes=5)


@dataclass
class StandIn:
    """`yfinance.download` answering from the shared files: the bars opened in [start, end), in Yahoo's shape."""

    series: dict[str, tuple[Instrument, pd.DataFrame]]
    cpu: float = 0.0  # its own CPU seconds: Yahoo's work, taken out of the bot's

    def __call__(self, **kwargs: Any) -> pd.DataFrame:
        began = time.process_time()
        instrument, bars = self.series[kwargs["tickers"]]
        window = bars.loc[(bars.index >= pd.Timestamp(kwargs["start"])) & (bars.index < pd.Timestamp(kwargs["end"]))]
        answer = yahoo_frame(window, instrument.ticker, instrument.interval, tz=instrument.timezone)
        self.cpu += time.process_time() - began
        return answer


class Clock:
    """A monotonic clock the runs move."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=36)
    parser.add_argument("--start", default="2025-09-01T00:00Z")
    parser.add_argument("--market-dir", type=Path, default=ROOT.parent / "shared" / "data" / "market")
    args = parser.parse_args()
    start = pd.Timestamp(args.start).to_pydatetime()
    settings = load_settings()
    items = watchlist(settings)
    scan = ScanService(
        YFinanceProvider(None), None, items, settings.engine_config(), bar_rules(settings), FixedClock(start)
    )
    needs = {i.instrument.symbol: scan.history_bars(i) for i in items}
    scan.close()
    series = {}
    for item in items:
        path = args.market_dir / f"{item.instrument.symbol}_{item.instrument.interval.value}.csv"
        series[item.instrument.ticker] = (item.instrument, read_bar_csv(path))
    work = Path(tempfile.mkdtemp(prefix="tradebot-bench-fetch-"))
    try:
        caches = {"held": work / "held", "every run": work / "every"}
        for folder in caches.values():
            for instrument, bars in series.values():
                seed = bars.loc[bars.index + instrument.interval.delta <= pd.Timestamp(start)]
                write_bar_csv(seed, BarCache(folder).path(instrument.ticker, instrument.interval))
        rows = sum(len(read_bar_csv(p)) for p in caches["held"].iterdir())
        clocks = {"held": Clock(), "every run": Clock()}
        stand_in = StandIn(series)
        providers = {
            "held": YFinanceProvider(caches["held"], download=stand_in, monotonic=clocks["held"]),
            "every run": YFinanceProvider(caches["every run"], download=stand_in, cache_save_seconds=0.0),
        }
        cpu: dict[str, list[float]] = {name: [] for name in providers}
        for run in range(1, args.runs + 1):
            now = start + run * RUN_EVERY
            served: dict[str, list[pd.DataFrame]] = {}
            for name, provider in providers.items():  # in turn, the same run's fetches
                clocks["held"].seconds += RUN_EVERY.total_seconds() if name == "held" else 0.0
                began, yahoo = time.process_time(), stand_in.cpu
                served[name] = [provider.fetch(i.instrument, now, needs[i.instrument.symbol]) for i in items]
                cpu[name].append(time.process_time() - began - (stand_in.cpu - yahoo))
            for a, b in zip(served["held"], served["every run"], strict=True):
                pd.testing.assert_frame_equal(a, b, check_exact=True, check_freq=False)
        written = {name: p.cache.files_written if p.cache is not None else 0 for name, p in providers.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    symbols = len(items)
    print(f"watchlist: {symbols} symbols; cache seeded up to {start:%Y-%m-%d %H:%MZ}: {rows:,} bars in all")
    print(
        f"{args.runs} runs, {RUN_EVERY.seconds // 60} minutes apart; each fetches every symbol with the scan's history"
    )
    for name in providers:
        mean = statistics.mean(cpu[name]) * 1000
        print(
            f"  {name:10s}: CPU per run mean {mean:7.1f} ms (p50 {statistics.median(cpu[name]) * 1000:6.1f}, max "
            f"{max(cpu[name]) * 1000:6.1f}); {mean / symbols:5.2f} ms a symbol; {written[name]} cache files written"
        )
    held, every = statistics.mean(cpu["held"]), statistics.mean(cpu["every run"])
    print(f"ratio: the cache as it is does {every / held:.1f}x less work than writing every file every run")
    per_symbol = held * 1000 / symbols
    ok = per_symbol <= GOAL_MS_PER_SYMBOL
    print(f"{'PASS' if ok else 'FAIL'}: {per_symbol:.2f} ms of CPU a symbol a run, goal <= {GOAL_MS_PER_SYMBOL:g} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
