"""On-disk cache of downloaded bars: one CSV per ticker and interval, in the shared bar format.

The cache holds closed bars only, keyed by open time; later downloads override earlier rows for the same
timestamp (a feed's latest revision wins). Files are replaced atomically, so a crash or a concurrent
reader never sees half a file. A cache file that no longer parses is moved aside to `*.corrupt` (kept for
inspection, not deleted) and treated as empty, so the next download rebuilds it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from data.market.csv_provider import BarFileReader, empty_bar_frame, write_bar_csv
from engine.bars import OHLCV_COLUMNS
from engine.domain import Interval
from engine.ports import ProviderError

log = logging.getLogger(__name__)


def merge_bars(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Union of two bar frames sorted by open time; for a timestamp present in both, `new`'s row wins."""
    if old.empty:
        combined = new
    elif new.empty:
        combined = old
    else:
        combined = pd.concat([old.loc[:, list(OHLCV_COLUMNS)], new.loc[:, list(OHLCV_COLUMNS)]])
    combined = combined[~combined.index.duplicated(keep="last")]
    return combined.sort_index(kind="stable")


class BarCache:
    """Closed bars per (ticker, interval) under `directory`."""

    def __init__(self, directory: Path, reader: BarFileReader | None = None) -> None:
        self.directory = directory
        self.reader = reader or BarFileReader()

    def path(self, ticker: str, interval: Interval) -> Path:
        """Cache file of `ticker` (percent-encoded, so `^NSEI` or `EURUSD=X` stay unambiguous) at `interval`."""
        return self.directory / f"{quote(ticker, safe='')}_{interval.value}.csv"

    def load(self, ticker: str, interval: Interval) -> pd.DataFrame:
        """Cached bars sorted by open time with unique timestamps; empty when nothing usable is cached."""
        path = self.path(ticker, interval)
        if not path.exists():
            return empty_bar_frame()
        try:
            frame = self.reader.read(path)
        except ProviderError as exc:
            aside = path.with_name(path.name + ".corrupt")
            log.warning("bar cache %s is unreadable (%s); moved to %s and rebuilding", path, exc, aside)
            self.reader.forget(path)
            os.replace(path, aside)
            return empty_bar_frame()
        if not (frame.index.is_monotonic_increasing and frame.index.is_unique):
            frame = merge_bars(empty_bar_frame(), frame)
        return frame

    def save(self, ticker: str, interval: Interval, frame: pd.DataFrame) -> None:
        """Replace the cache of (ticker, interval) with `frame`, atomically."""
        write_bar_csv(frame, self.path(ticker, interval))
