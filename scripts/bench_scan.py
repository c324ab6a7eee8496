"""Benchmark a full scan: 500 symbols x 2,000 bars, against raw TA-Lib on the same arrays.

The full scan is what `tradebot scan` does per symbol after loading: build the context, compute the
shared indicators, run every applicable strategy over the whole history, validate and score what fired on
the last bar. A second figure validates and scores every bar that fired (what a backtest does).

The reference is the same work TA-Lib does inside the scan: every TA-Lib call the scan makes (recorded on a
first pass, with the very arrays it was given: the base bars and the resampled higher-timeframe ones) replayed
alone. Scan and reference run in turn (A B A B ...), medians; goal: the scan within 1.5x of its TA-Lib calls.

Usage: python scripts/bench_scan.py [--symbols 500] [--bars 2000] [--repeat 5] [--market-dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import talib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.bars import Bars, from_nanos  # noqa: E402
from engine.calendars import get_calendar  # noqa: E402
from engine.catalog import DEFAULT_WATCHLIST  # noqa: E402
from engine.domain import Instrument, Interval  # noqa: E402
from engine.indicators import MarketContext  # noqa: E402
from engine.pipeline import EngineConfig, scan_instrument  # noqa: E402
from engine.strategy import REGISTRY, Strategy, strategy_names  # noqa: E402


def load(market_dir: Path, instrument: Instrument) -> Bars:
    frame = pd.read_csv(market_dir / f"{instrument.symbol}_{instrument.interval}.csv", index_col="timestamp")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True), name="timestamp")
    return Bars.from_frame(frame, Interval(instrument.interval))


def universe(market_dir: Path, symbols: int, bars: int) -> list[tuple[Instrument, Bars]]:
    """`symbols` (instrument, 2,000-bar window) pairs cycling over the shared files and their windows."""
    series = [(i, load(market_dir, i)) for i in DEFAULT_WATCHLIST]
    out = []
    k = 0
    while len(out) < symbols:
        instrument, full = series[k % len(series)]
        windows = max(1, (len(full) - bars) // 250)
        start = ((k // len(series)) * 250) % (windows * 250)
        window = full.head(start + bars).tail(bars)
        out.append((instrument, copy_bars(window)))
        k += 1
    return out


def copy_bars(b: Bars) -> Bars:
    return Bars(
        b.interval,
        *(np.ascontiguousarray(getattr(b, c)).copy() for c in ("time", "open", "high", "low", "close", "volume")),
    )


GOAL_RATIO = 1.5
Call = tuple[Any, tuple[Any, ...], dict[str, Any]]


def record_talib_calls(items: list[tuple[Instrument, Bars]], strategies: list[Strategy[Any]]) -> list[Call]:
    """Every TA-Lib call one live scan of `items` makes, with its arguments (the functions wrapped for one pass)."""
    calls: list[Call] = []
    names = [n for n in dir(talib) if n.isupper() and callable(getattr(talib, n))]
    originals = {n: getattr(talib, n) for n in names}

    def recorder(fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append((fn, args, kwargs))
            return fn(*args, **kwargs)

        return call

    for name, fn in originals.items():
        setattr(talib, name, recorder(fn))
    try:
        full_scan(items, strategies, False)
    finally:
        for name, fn in originals.items():
            setattr(talib, name, fn)
    return calls


def replay(calls: list[Call]) -> None:
    for fn, args, kwargs in calls:
        fn(*args, **kwargs)


def full_scan(
    items: list[tuple[Instrument, Bars]], strategies: list[Strategy[Any]], every_bar: bool
) -> tuple[int, int]:
    config = EngineConfig()
    setups = rejections = 0
    for instrument, bars in items:
        ctx = MarketContext(instrument, bars, get_calendar(instrument.calendar))
        runs = [s for s in strategies if s.applies_to(instrument)]
        now = from_nanos(int(bars.close_time[-1]))
        if every_bar:
            fired = np.unique(np.concatenate([s.signals(ctx).fired() for s in runs] or [np.empty(0, np.int64)]))
            result = scan_instrument(ctx, runs, config, None, fired)
        else:
            result = scan_instrument(ctx, runs, config, now)
        setups += len(result.setups)
        rejections += len(result.rejections)
    return setups, rejections


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - t0, value


def in_turn(repeat: int, a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[float, float, Any]:
    """Run a and b alternately `repeat` times; their median seconds and a's last value."""
    times_a, times_b, value = [], [], None
    for _ in range(repeat):
        t, value = timed(*a)
        times_a.append(t)
        times_b.append(timed(*b)[0])
    return statistics.median(times_a), statistics.median(times_b), value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--market-dir", type=Path, default=ROOT.parent / "shared" / "data" / "market")
    args = parser.parse_args()
    if not args.market_dir.is_dir():
        print(f"market data not found at {args.market_dir}", file=sys.stderr)
        return 2
    items = universe(args.market_dir, args.symbols, args.bars)
    strategies = [REGISTRY[name]() for name in strategy_names()]
    print(f"universe: {len(items)} symbols x {args.bars} bars; strategies: {', '.join(s.name for s in strategies)}")

    calls = record_talib_calls(items, strategies)
    scan_s, talib_s, (setups, rejected) = in_turn(args.repeat, (full_scan, items, strategies, False), (replay, calls))
    every_s, (all_setups, all_rejected) = timed(full_scan, items, strategies, True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"the scan's own {len(calls):,} TA-Lib calls, replayed alone:   {talib_s * 1000:8.1f} ms (median)")
    print(
        f"full scan, last bar (live):                          {scan_s * 1000:8.1f} ms "
        f"({setups} setups, {rejected} rejections; median, run in turn with the reference)"
    )
    ratio = scan_s / talib_s
    print(f"ratio full scan / its TA-Lib calls:                  {ratio:8.2f}x")
    print(
        f"every fired bar validated and scored (backtest-like): {every_s * 1000:8.1f} ms "
        f"({all_setups} setups, {all_rejected} rejections)"
    )
    print(f"per symbol: {scan_s / len(items) * 1e6:.0f} us live scan")
    print(f"peak RSS: {peak_mb:.0f} MB")
    ok = ratio <= GOAL_RATIO and peak_mb <= 400
    print(f"{'PASS' if ok else 'FAIL'}: goal full scan <= {GOAL_RATIO}x its TA-Lib calls, peak RSS <= 400 MB")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
