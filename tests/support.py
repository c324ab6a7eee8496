"""Helpers shared by the tests: where the shared market data is, and loading it without the adapters."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

from engine.bars import Bars
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.domain import Instrument, Interval
from engine.indicators import MarketContext

MARKET_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "market"
SHARED_ABSENT = "../shared/data/market is absent: real-data tests need the shared market data beside the repo"


def require_market_dir() -> Path:
    """Return the shared market-data folder, or skip the calling test with a clear reason."""
    if not MARKET_DIR.is_dir():
        pytest.skip(SHARED_ABSENT)
    return MARKET_DIR


@lru_cache(maxsize=64)
def shared_bars(symbol: str, interval: str) -> Bars:
    """Load `SYMBOL_INTERVAL.csv` from the shared folder straight into Bars (cached per test session)."""
    path = require_market_dir() / f"{symbol}_{interval}.csv"
    frame = pd.read_csv(path, index_col="timestamp")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True), name="timestamp")
    return Bars.from_frame(frame, Interval(interval))


def shared_context(symbol: str, interval: str | None = None, n: int | None = None) -> MarketContext:
    """A MarketContext over the shared bars of a built-in instrument (the first `n` bars if given)."""
    instrument: Instrument = default_instrument(symbol)
    if interval is not None:
        instrument = replace(instrument, interval=Interval(interval))
    bars = shared_bars(symbol, instrument.interval.value)
    if n is not None:
        bars = bars.head(n)
    return MarketContext(instrument, bars, get_calendar(instrument.calendar))


def worker_outlives_kill_9(argv: list[str], cwd: Path | None = None, seconds: float = 10.0) -> bool:
    """Run `argv` (a process that starts a worker and prints its pid), kill it with -9, and say whether the worker
    is still running `seconds` later (a zombie waiting for its reaper counts as gone)."""
    # Its stderr is dropped: after a kill -9 its multiprocessing resource tracker says it cleaned up after it.
    starter = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd)
    try:
        assert starter.stdout is not None
        worker = int(starter.stdout.readline())
        assert _running(worker), "the worker was not running before the kill"
        starter.kill()
        starter.wait(10)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and _running(worker):
            time.sleep(0.05)
        return _running(worker)
    finally:
        starter.kill()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
