"""Bar CSV files in the shared format, and the provider that serves bars from a folder of them.

Format: header `timestamp,open,high,low,close,volume`; `timestamp` is the bar OPEN time in ISO-8601 UTC
ending in `Z` (daily files label each bar `DATE T00:00:00Z`). A file that breaks the format raises
`ProviderError` naming the file and the problem. Data-level defects (NaN prices, high below low,
duplicates, unsorted rows) are passed through raw: `data.market.validation.validate_bars` deals with them.

Parsed files are memoised by (path, mtime, size, inode), so a bot re-scanning every few minutes parses
each file once until it changes, and every provider of the process shares one reader (`SHARED_CSV_FILES`) unless
given its own: an unchanged file is parsed once per process, whichever provider reads it (the bot's, each
validation load, the sandbox's after a restart).

NSE hourly bars start at 09:15 IST, not on the clock hour: for an XNSE instrument at 1h with no
`SYMBOL_1h.csv`, the provider builds them from `SYMBOL_5m.csv` (`engine.session_hours.nse_hours`).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from engine.bars import OHLCV_COLUMNS, Bars, to_nanos
from engine.calendars import SessionCalendar, get_calendar
from engine.domain import Instrument, Interval, ensure_utc
from engine.ports import ProviderError
from engine.session_hours import nse_hours

CSV_HEADER: Final = ("timestamp", *OHLCV_COLUMNS)
TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
NSE_CALENDAR: Final = "XNSE"
INDEX_NAME: Final = "timestamp"


def empty_bar_frame() -> pd.DataFrame:
    """A bar frame with no rows: UTC DatetimeIndex named `timestamp` and float OHLCV columns."""
    index = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name=INDEX_NAME)
    return pd.DataFrame({c: np.empty(0, dtype=np.float64) for c in OHLCV_COLUMNS}, index=index)


def read_bar_csv(path: Path) -> pd.DataFrame:
    """Parse a bar CSV into a raw frame indexed by UTC open time, or raise ProviderError naming the defect."""
    try:
        raw = pd.read_csv(path, dtype={"timestamp": object})
    except FileNotFoundError:
        raise ProviderError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise ProviderError(f"{path}: file is empty (expected the header {','.join(CSV_HEADER)})") from None
    except pd.errors.ParserError as exc:
        raise ProviderError(f"{path}: malformed CSV: {_first_line(exc)}") from None
    except UnicodeDecodeError:
        raise ProviderError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ProviderError(f"{path}: cannot read: {exc.strerror or exc}") from None
    header = tuple(str(c) for c in raw.columns)
    if header != CSV_HEADER:
        raise ProviderError(f"{path}: bad header {','.join(header)!r}, expected {','.join(CSV_HEADER)!r}")
    index = _parse_timestamps(path, raw["timestamp"])
    columns = {name: _parse_numbers(path, name, raw[name]) for name in OHLCV_COLUMNS}
    return pd.DataFrame(columns, index=index)


def write_bar_csv(frame: pd.DataFrame, path: Path) -> FileStamp:
    """Write a bar frame in the shared format atomically (temp file in the same folder, then os.replace); the
    stamp of the file written (a rename keeps it)."""
    out = pd.DataFrame(
        {c: frame[c].to_numpy(dtype=np.float64) for c in OHLCV_COLUMNS},
        index=pd.Index(frame.index.tz_convert("UTC").strftime(TIMESTAMP_FORMAT), name=INDEX_NAME),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            out.to_csv(handle, lineterminator="\n")
            handle.flush()
            os.fsync(handle.fileno())
            stamp = FileStamp.from_stat(os.fstat(handle.fileno()))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return stamp


def closed_tail(
    frame: pd.DataFrame, interval: Interval, end: datetime, bars: int, calendar: SessionCalendar | None = None
) -> pd.DataFrame:
    """The latest `bars` rows closed by `end` (open + interval <= end, or the session's close when earlier:
    `calendar`), keeping the frame's own row order, as a frame of their own.

    Never a view of `frame` (a reader's or cache's, kept for good): pandas lists a view, and every column read from
    it, among the kept frame's references (its values' and its index's) and sweeps out the dead ones only every
    few hundred, so each kept file carried up to ~1,000 of them (~130 kB). A taken frame has its own values and
    index; only its column labels are the kept frame's (one reference a fetch, swept out the same way)."""
    if bars < 1:
        raise ValueError(f"bars must be at least 1, was {bars}")
    times = frame.index.as_unit("ns").asi8
    end_ns = to_nanos(ensure_utc(end, "end"))
    cutoff = end_ns - interval.nanos
    if calendar is not None and interval.is_intraday:
        if frame.index.is_monotonic_increasing:
            # A bar closes after it opens and by open + interval: only the bars of the last interval before `end`
            # need their session's close, not every bar of the file.
            sure = int(np.searchsorted(times, cutoff, side="right"))  # opened by end - interval: closed by end
            opened = int(np.searchsorted(times, end_ns, side="left"))
            recent = sure + np.flatnonzero(calendar.bar_closes(times[sure:opened], interval) <= end_ns)
            earlier = np.arange(max(sure - max(bars - len(recent), 0), 0), sure)
            return frame.take(np.r_[earlier, recent][-bars:])
        closed = np.flatnonzero(calendar.bar_closes(times, interval) <= end_ns)
        latest = closed[np.argsort(times[closed], kind="stable")][-bars:]
        return frame.take(np.sort(latest))
    if frame.index.is_monotonic_increasing:
        stop = int(np.searchsorted(times, cutoff, side="right"))
        return frame.take(np.arange(max(stop - bars, 0), stop))
    closed = np.flatnonzero(times <= cutoff)
    latest = closed[np.argsort(times[closed], kind="stable")][-bars:]
    return frame.take(np.sort(latest))


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What tells one version of a file from another: its modification time, size and inode."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        """The stamp of the file at `path`, None when there is none."""
        try:
            return cls.from_stat(path.stat())
        except FileNotFoundError:
            return None


class BarFileReader:
    """Reads bar CSVs, re-parsing a file only when its mtime, size or inode changed.

    It keeps the parsed frames of at most `max_bytes` (None: all), dropping the least recently read beyond;
    a dropped file is parsed again when it is next read. Safe to share between threads.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0 or None (no limit), was {max_bytes}")
        self.max_bytes = max_bytes
        self._memo: OrderedDict[Path, tuple[FileStamp, pd.DataFrame, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.files_parsed = 0

    @property
    def kept_bytes(self) -> int:
        """The memory of the parsed frames kept."""
        return self._bytes

    def read(self, path: Path) -> pd.DataFrame:
        """The parsed frame of `path` (shared between callers: treat it as read-only)."""
        try:
            st = path.stat()
        except FileNotFoundError:
            self.forget(path)
            raise ProviderError(f"{path}: file not found") from None
        except OSError as exc:
            raise ProviderError(f"{path}: cannot read: {exc.strerror or exc}") from None
        stamp = FileStamp.from_stat(st)
        with self._lock:
            hit = self._memo.get(path)
            if hit is not None and hit[0] == stamp:
                self._memo.move_to_end(path)
                return hit[1]
        frame = read_bar_csv(path)  # outside the lock: other files are read meanwhile
        size = int(frame.memory_usage(index=True).sum())
        with self._lock:
            self.files_parsed += 1
            self._drop(path)
            self._memo[path] = (stamp, frame, size)
            self._bytes += size
            while self.max_bytes is not None and self._bytes > self.max_bytes and len(self._memo) > 1:
                self._drop(next(iter(self._memo)))
        return frame

    def forget(self, path: Path) -> None:
        with self._lock:
            self._drop(path)

    def _drop(self, path: Path) -> None:
        gone = self._memo.pop(path, None)
        if gone is not None:
            self._bytes -= gone[2]


SHARED_CSV_BYTES: Final = 512 * 1024 * 1024  # the default watchlist's files parse to ~17 MB
SHARED_CSV_FILES: Final = BarFileReader(SHARED_CSV_BYTES)  # the providers' reader unless they are given one


class CsvProvider:
    """Bars from `DIR/{symbol}_{interval}.csv` files in the shared format."""

    def __init__(self, directory: Path, reader: BarFileReader | None = None) -> None:
        self.directory = directory
        self.name = f"csv:{directory}"
        self.reader = SHARED_CSV_FILES if reader is None else reader
        self._hours: dict[Path, tuple[pd.DataFrame, pd.DataFrame]] = {}

    def path_for(self, instrument: Instrument) -> Path:
        return self.directory / f"{instrument.symbol}_{instrument.interval.value}.csv"

    def fetch(self, instrument: Instrument, end: datetime, bars: int) -> pd.DataFrame:
        """Return the last `bars` bars of the instrument's file closed by `end`, oldest first."""
        path = self.path_for(instrument)
        five = self.directory / f"{instrument.symbol}_{Interval.M5.value}.csv"
        if not path.is_file() and _nse_hourly(instrument) and five.is_file():
            return closed_tail(self._nse_hours(five), instrument.interval, end, bars, get_calendar(instrument.calendar))
        if not path.is_file():
            raise ProviderError(
                f"no data file for {instrument.symbol} {instrument.interval.value}: {path} does not exist"
            )
        return closed_tail(self.reader.read(path), instrument.interval, end, bars, session_calendar(instrument))

    def _nse_hours(self, five: Path) -> pd.DataFrame:
        """NSE hours of a 5-minute file, rebuilt only when the file was re-read."""
        frame = self.reader.read(five)
        hit = self._hours.get(five)
        if hit is not None and hit[0] is frame:
            return hit[1]
        ordered = frame[~frame.index.duplicated(keep="first")].sort_index()
        hours = nse_hours(Bars.from_frame(ordered, Interval.M5)).bars.to_frame()
        self._hours[five] = (frame, hours)
        return hours


def session_calendar(instrument: Instrument) -> SessionCalendar | None:
    """The instrument's calendar when a session's last intraday bar closes before open + interval (its session
    is not a whole number of intervals, e.g. NSE 1h), else None: then open + interval is every bar's close."""
    if not instrument.interval.is_intraday:
        return None
    try:
        calendar = get_calendar(instrument.calendar)
    except (KeyError, ValueError):
        return None
    uneven = (calendar.close_offset - calendar.open_offset) % instrument.interval.delta != timedelta(0)
    return calendar if uneven else None


def _nse_hourly(instrument: Instrument) -> bool:
    return instrument.calendar == NSE_CALENDAR and instrument.interval is Interval.H1


def _parse_timestamps(path: Path, column: pd.Series) -> pd.DatetimeIndex:
    parsed = pd.to_datetime(column, format="ISO8601", utc=True, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise ProviderError(
            f"{path}: unparseable timestamp {_cell(column, bad[0])} in data row {bad[0] + 1}"
            f"{_more(len(bad))} (expected ISO-8601 UTC like 2025-01-01T03:45:00Z)"
        )
    text = column.to_numpy().astype(np.str_)
    not_utc = np.flatnonzero(~np.char.endswith(text, "Z"))
    if len(not_utc):
        raise ProviderError(
            f"{path}: timestamp {_cell(column, not_utc[0])} in data row {not_utc[0] + 1} is not marked UTC"
            f"{_more(len(not_utc))} (timestamps must end in Z)"
        )
    return pd.DatetimeIndex(parsed, name=INDEX_NAME).as_unit("ns")


def _parse_numbers(path: Path, name: str, column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    numbers = pd.to_numeric(column, errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy() & column.notna().to_numpy())
    if len(bad):
        raise ProviderError(
            f"{path}: unparseable {name} value {_cell(column, bad[0])} in data row {bad[0] + 1}{_more(len(bad))}"
        )
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def _cell(column: pd.Series, position: int) -> str:
    value = column.to_numpy()[position]
    return "(empty)" if pd.isna(value) else repr(str(value))


def _more(count: int) -> str:
    return f" and {count - 1} more" if count > 1 else ""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
