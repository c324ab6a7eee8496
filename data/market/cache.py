"""On-disk cache of downloaded bars: one CSV per ticker and interval, in the shared bar format.

The cache holds closed bars only, keyed by open time; later downloads override earlier rows for the same
timestamp (a feed's latest revision wins). Files are replaced atomically, so a crash or a concurrent
reader never sees half a file. A cache file that no longer parses is moved aside to `*.corrupt` (kept for
inspection, not deleted) and treated as empty, so the next download rebuilds it.

The newest bars of each file are held in memory between runs, and a file is rewritten at most once every
`save_every` seconds (`CACHE_SAVE_SECONDS`) while downloads only extend it: writing the whole history (tens of
thousands of rows for the strategies' slowest averages) on every run cost the running bot tens of milliseconds of
CPU per symbol per run. A cache that was started, backfilled or replaced is written at once. What a crash or a
restart loses is at most that long of the newest bars, which the next run downloads again (Yahoo serves 60 days
of 5m bars and more of the others). Another process that rewrites a file is noticed (its size, mtime or inode
changed) and its file is read. Files read together (at a start) come due at different runs, so the writes spread
over the interval.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

import numpy as np
import pandas as pd

from data.market.csv_provider import INDEX_NAME, FileStamp, empty_bar_frame, read_bar_csv, write_bar_csv
from engine.bars import OHLCV_COLUMNS
from engine.domain import Interval
from engine.ports import ProviderError

log = logging.getLogger(__name__)

CACHE_SAVE_SECONDS: Final = 3600.0


def merge_bars(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Union of two bar frames sorted by open time; for a timestamp present in both, `new`'s row wins."""
    tail = _tail_merge(old, new)
    if tail is not None:
        return tail
    if old.empty:
        combined = new
    elif new.empty:
        combined = old
    else:
        combined = pd.concat([old.loc[:, list(OHLCV_COLUMNS)], new.loc[:, list(OHLCV_COLUMNS)]])
    combined = combined[~combined.index.duplicated(keep="last")]
    return combined.sort_index(kind="stable")


def _tail_merge(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame | None:
    """The union when `new` (sorted, unique) holds every bar of sorted, unique `old` from its own first bar on (a
    download of the tail): `old` up to there, then `new`, without sorting the whole history again; else None."""
    if old.empty or new.empty or not (new.index.is_monotonic_increasing and new.index.is_unique):
        return None
    if not (old.index.is_monotonic_increasing and old.index.is_unique):
        return None
    old_times, new_times = old.index.asi8, new.index.asi8
    if old.index.dtype != new.index.dtype:
        return None
    cut = int(np.searchsorted(old_times, new_times[0]))
    if not np.isin(old_times[cut:], new_times).all():
        return None
    return pd.concat([old.iloc[:cut].loc[:, list(OHLCV_COLUMNS)], new.loc[:, list(OHLCV_COLUMNS)]])


@dataclass(frozen=True)
class _Held:
    """The newest bars of one cache file and the file they extend."""

    frame: pd.DataFrame
    on_disk: FileStamp | None  # the file as this process last read or wrote it (None: no file)
    written_at: float  # monotonic seconds of that read or write


class BarCache:
    """Closed bars per (ticker, interval) under `directory`."""

    def __init__(
        self,
        directory: Path,
        *,
        save_every: float = CACHE_SAVE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not save_every >= 0:
            raise ValueError(f"save_every must be a number of seconds >= 0, was {save_every!r}")
        self.directory = directory
        self.save_every = save_every
        self._monotonic = monotonic
        self._held: dict[Path, _Held] = {}
        self.files_read = 0
        self.files_written = 0

    def path(self, ticker: str, interval: Interval) -> Path:
        """Cache file of `ticker` (percent-encoded, so `^NSEI` or `EURUSD=X` stay unambiguous) at `interval`."""
        return self.directory / f"{quote(ticker, safe='')}_{interval.value}.csv"

    def load(self, ticker: str, interval: Interval) -> pd.DataFrame:
        """Cached bars sorted by open time with unique timestamps; empty when nothing usable is cached."""
        path = self.path(ticker, interval)
        on_disk = FileStamp.of(path)
        held = self._held.get(path)
        if held is not None and held.on_disk == on_disk:
            return held.frame  # the newest bars, on a file nobody else has changed since
        frame = self._read(path) if on_disk is not None else empty_bar_frame()
        # Files read together come due apart: as if each was written a fixed part of the interval earlier.
        spread = zlib.crc32(path.name.encode()) / 2**32 * self.save_every
        self._held[path] = _Held(frame, FileStamp.of(path), self._monotonic() - spread)
        return frame

    def save(self, ticker: str, interval: Interval, frame: pd.DataFrame) -> None:
        """Hold `frame` as the cache of (ticker, interval); write it (atomically) when it is not an extension of
        what the file holds or the file was last written `save_every` seconds ago or more."""
        path = self.path(ticker, interval)
        frame = _as_written(frame)
        held = self._held.get(path)
        now = self._monotonic()
        due = held is None or held.on_disk is None or now - held.written_at >= self.save_every
        if due or not _extends(frame, held.frame if held is not None else None):
            stamp = write_bar_csv(frame, path)
            self.files_written += 1
            self._held[path] = _Held(frame, stamp, now)
        else:
            assert held is not None
            self._held[path] = _Held(frame, held.on_disk, held.written_at)

    def _read(self, path: Path) -> pd.DataFrame:
        try:
            frame = read_bar_csv(path)
        except ProviderError as exc:
            aside = path.with_name(path.name + ".corrupt")
            log.warning("bar cache %s is unreadable (%s); moved to %s and rebuilding", path, exc, aside)
            os.replace(path, aside)
            return empty_bar_frame()
        self.files_read += 1
        if not (frame.index.is_monotonic_increasing and frame.index.is_unique):
            frame = merge_bars(empty_bar_frame(), frame)
        return frame


def _as_written(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` as its file reads back: float OHLCV columns, open times in whole seconds (UTC, ns) named timestamp."""
    index = frame.index
    if (
        isinstance(index, pd.DatetimeIndex)
        and str(index.dtype) == "datetime64[ns, UTC]"
        and index.name == INDEX_NAME
        and tuple(frame.columns) == OHLCV_COLUMNS
        and all(frame[c].dtype == np.float64 for c in OHLCV_COLUMNS)
        and not (index.asi8 % 1_000_000_000).any()
    ):
        return frame
    index = pd.DatetimeIndex(frame.index).tz_convert("UTC").as_unit("ns").floor("s")
    columns = {c: frame[c].to_numpy(dtype=np.float64) for c in OHLCV_COLUMNS}
    return pd.DataFrame(columns, index=pd.DatetimeIndex(index, name=INDEX_NAME))


def _extends(new: pd.DataFrame, old: pd.DataFrame | None) -> bool:
    """Whether `new` keeps every bar of `old` from its first on (values may be revised) and only adds later ones."""
    if old is None or old.empty or new.empty:
        return False
    return bool(new.index[0] == old.index[0] and len(new) >= len(old) and new.index[len(old) - 1] == old.index[-1])
