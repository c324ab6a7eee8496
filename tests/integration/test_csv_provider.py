"""CsvProvider on the real shared files and on deliberately broken temp files; the provider factory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.market import csv_provider
from data.market.csv_provider import (
    CSV_HEADER,
    SHARED_CSV_FILES,
    BarFileReader,
    CsvProvider,
    closed_tail,
    read_bar_csv,
    write_bar_csv,
)
from data.market.providers import DeferredProvider, provider_from_source
from data.market.yfinance_provider import YFinanceProvider
from engine.bars import to_nanos
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.domain import Interval
from engine.ports import ProviderError

FAR_FUTURE = datetime(2030, 1, 1, tzinfo=UTC)
HEADER = ",".join(CSV_HEADER)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("symbol", "interval", "rows", "first", "last"),
    [
        ("EURUSD", "1h", 9_998, "2024-11-27T03:00Z", "2026-07-09T17:00Z"),
        ("BTCUSDT", "1h", 19_704, "2024-01-01T00:00Z", "2026-03-31T23:00Z"),
        ("SPY", "5m", 16_198, "2025-05-12T13:30Z", "2026-03-11T19:55Z"),
        ("NIFTY50", "5m", 18_012, "2025-01-01T03:45Z", "2025-12-31T09:55Z"),
        ("XAUUSD", "1d", 3_452, "2013-01-02T00:00Z", "2026-05-15T00:00Z"),
    ],
)
def test_shared_files_load_whole(
    market_dir: Path, symbol: str, interval: str, rows: int, first: str, last: str
) -> None:
    instrument = replace(default_instrument(symbol), interval=Interval(interval))
    frame = CsvProvider(market_dir).fetch(instrument, FAR_FUTURE, 100_000)
    assert len(frame) == rows
    assert frame.index[0] == pd.Timestamp(first)
    assert frame.index[-1] == pd.Timestamp(last)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.name == "timestamp"
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert frame.index.is_monotonic_increasing and frame.index.is_unique


@pytest.mark.shared_data
def test_known_values_survive_parsing(market_dir: Path) -> None:
    spy = CsvProvider(market_dir).fetch(
        replace(default_instrument("SPY"), interval=Interval.D1), datetime(2025, 1, 1, tzinfo=UTC), 5
    )
    assert spy.loc[pd.Timestamp("2024-12-31T00:00Z"), "close"] == 586.08
    nifty = CsvProvider(market_dir).fetch(default_instrument("NIFTY50"), FAR_FUTURE, 500)
    assert (nifty["volume"] == 0).all()


@pytest.mark.shared_data
def test_end_cutoff_includes_bar_closing_at_end_and_excludes_forming_bar(market_dir: Path) -> None:
    provider = CsvProvider(market_dir)
    eurusd = default_instrument("EURUSD")
    end = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)
    frame = provider.fetch(eurusd, end, 10)
    assert frame.index[-1] == pd.Timestamp("2025-03-12T14:00Z")  # closes exactly at `end`
    one_second_before = provider.fetch(eurusd, end - timedelta(seconds=1), 10)
    assert one_second_before.index[-1] == pd.Timestamp("2025-03-12T13:00Z")  # 14:00 bar still forming
    assert len(frame) == 10
    assert (np.diff(frame.index.asi8) > 0).all()


@pytest.mark.shared_data
def test_bars_limit_takes_the_latest(market_dir: Path) -> None:
    provider = CsvProvider(market_dir)
    reliance = default_instrument("RELIANCE")
    end = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)
    frame = provider.fetch(reliance, end, 75)
    assert len(frame) == 75
    assert frame.index[-1] == pd.Timestamp("2025-06-12T09:35Z")
    full = read_bar_csv(market_dir / "RELIANCE_5m.csv")
    expected = full.loc[: pd.Timestamp("2025-06-12T09:35Z")].tail(75)
    pd.testing.assert_frame_equal(frame, expected)
    assert len(provider.fetch(reliance, datetime(2025, 1, 1, 3, 55, tzinfo=UTC), 500)) == 2


@pytest.mark.shared_data
def test_end_before_history_gives_empty_frame(market_dir: Path) -> None:
    frame = CsvProvider(market_dir).fetch(default_instrument("SPY"), datetime(2020, 1, 1, tzinfo=UTC), 10)
    assert frame.empty
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match=r"no data file for EURUSD 1h: .*EURUSD_1h\.csv does not exist"):
        CsvProvider(tmp_path).fetch(default_instrument("EURUSD"), FAR_FUTURE, 10)


def _write(directory: Path, body: str, name: str = "EURUSD_1h.csv") -> Path:
    path = directory / name
    path.write_text(body, encoding="utf-8")
    return path


GOOD_ROWS = "2025-01-06T00:00:00Z,1.1,1.2,1.0,1.15,10\n2025-01-06T01:00:00Z,1.15,1.3,1.1,1.2,12\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("time,open,high,low,close,volume\n" + GOOD_ROWS, r"bad header 'time,open,high,low,close,volume'"),
        ("timestamp,open,high,low,close\n2025-01-06T00:00:00Z,1,1,1,1\n", r"bad header"),
        ("", r"file is empty"),
        (
            HEADER + "\n" + GOOD_ROWS + "2025-01-06T02:00:00Z,1.2,abc,1.1,1.2,3\n",
            r"unparseable high value 'abc' in data row 3",
        ),
        (
            HEADER + "\n2025-13-06T00:00:00Z,1.1,1.2,1.0,1.15,10\n" + GOOD_ROWS,
            r"unparseable timestamp '2025-13-06T00:00:00Z' in data row 1",
        ),
        (HEADER + "\n" + GOOD_ROWS + ",1.1,1.2,1.0,1.15,10\n", r"unparseable timestamp \(empty\) in data row 3"),
        (HEADER + "\n2025-01-06 00:00:00,1.1,1.2,1.0,1.15,10\n", r"is not marked UTC"),
        (HEADER + "\n" + GOOD_ROWS + "2025-01-06T02:00:00Z,1,2,3,4,5,6,7\n", r"malformed CSV"),
    ],
    ids=["renamed-column", "missing-column", "empty", "garbage-number", "bad-date", "no-date", "naive", "extra-fields"],
)
def test_corrupt_csv_raises_provider_error_naming_file(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ProviderError, match=message) as info:
        CsvProvider(tmp_path).fetch(default_instrument("EURUSD"), FAR_FUTURE, 10)
    assert str(path) in str(info.value)


def test_not_utf8_is_a_provider_error(tmp_path: Path) -> None:
    (tmp_path / "EURUSD_1h.csv").write_bytes(HEADER.encode() + b"\n\xff\xfe,1,1,1,1,1\n")
    with pytest.raises(ProviderError, match=r"EURUSD_1h\.csv: not UTF-8 text"):
        CsvProvider(tmp_path).fetch(default_instrument("EURUSD"), FAR_FUTURE, 10)


def test_empty_cells_pass_through_as_nan_for_validation(tmp_path: Path) -> None:
    _write(tmp_path, HEADER + "\n" + GOOD_ROWS + "2025-01-06T02:00:00Z,1.2,,1.1,1.2,\n")
    frame = CsvProvider(tmp_path).fetch(default_instrument("EURUSD"), FAR_FUTURE, 10)
    assert len(frame) == 3
    assert np.isnan(frame["high"].to_numpy()[-1]) and np.isnan(frame["volume"].to_numpy()[-1])


def test_unsorted_rows_keep_raw_order_but_limit_takes_latest(tmp_path: Path) -> None:
    rows = [
        "2025-01-06T03:00:00Z,1,1,1,1,1",
        "2025-01-06T01:00:00Z,2,2,2,2,2",
        "2025-01-06T02:00:00Z,3,3,3,3,3",
        "2025-01-06T00:00:00Z,4,4,4,4,4",
    ]
    _write(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n")
    frame = CsvProvider(tmp_path).fetch(default_instrument("EURUSD"), datetime(2025, 1, 6, 3, 0, tzinfo=UTC), 2)
    assert list(frame.index) == [pd.Timestamp("2025-01-06T01:00Z"), pd.Timestamp("2025-01-06T02:00Z")]


def test_parsed_file_is_cached_until_it_changes(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "\n" + GOOD_ROWS)
    provider = CsvProvider(tmp_path, BarFileReader())  # its own reader: its count is this test's
    eurusd = default_instrument("EURUSD")
    assert len(provider.fetch(eurusd, FAR_FUTURE, 10)) == 2
    assert len(provider.fetch(eurusd, FAR_FUTURE, 10)) == 2
    assert provider.reader.files_parsed == 1

    stat = path.stat()
    path.write_text(HEADER + "\n" + GOOD_ROWS.replace("1.15,10", "1.16,10"), encoding="utf-8")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    frame = provider.fetch(eurusd, FAR_FUTURE, 10)
    assert provider.reader.files_parsed == 2
    assert frame["close"].to_numpy()[0] == 1.16

    path.write_text(HEADER + "\n" + GOOD_ROWS + "2025-01-06T02:00:00Z,1.2,1.3,1.1,1.25,7\n", encoding="utf-8")
    assert len(provider.fetch(eurusd, FAR_FUTURE, 10)) == 3
    assert provider.reader.files_parsed == 3


def test_the_reader_keeps_what_was_read_last_within_its_memory_budget(tmp_path: Path) -> None:
    paths = [
        _write(tmp_path, HEADER + "\n" + GOOD_ROWS, f"{symbol}_1h.csv") for symbol in ("EURUSD", "GBPUSD", "AUDUSD")
    ]
    one = int(read_bar_csv(paths[0]).memory_usage(index=True).sum())
    reader = BarFileReader(max_bytes=2 * one)  # room for two files
    first = reader.read(paths[0])
    reader.read(paths[1])
    assert reader.read(paths[0]) is first and reader.files_parsed == 2  # read again: now the latest
    reader.read(paths[2])  # over the budget: the least recently read (GBPUSD) goes
    assert reader.kept_bytes == 2 * one and reader.files_parsed == 3
    assert reader.read(paths[0]) is first and reader.files_parsed == 3
    reader.read(paths[1])
    assert reader.files_parsed == 4 and reader.kept_bytes == 2 * one
    paths[2].unlink()
    with pytest.raises(ProviderError, match="file not found"):
        reader.read(paths[2])
    assert reader.kept_bytes <= 2 * one
    tiny = BarFileReader(max_bytes=0)  # always keeps the latest file, however large
    assert tiny.read(paths[0]) is tiny.read(paths[0]) and tiny.files_parsed == 1
    with pytest.raises(ValueError, match="max_bytes"):
        BarFileReader(max_bytes=-1)


def test_the_providers_of_a_process_share_the_parsed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, HEADER + "\n" + GOOD_ROWS)
    parses: list[Path] = []  # of this file only: another thread of the process may parse others meanwhile

    def counted(read: Path) -> pd.DataFrame:
        parses.extend([read] if read == path else [])
        return read_bar_csv(read)

    monkeypatch.setattr(csv_provider, "read_bar_csv", counted)
    eurusd = default_instrument("EURUSD")
    for _ in range(3):  # the bot's provider, a validation's, the sandbox's after a restart: one parse
        provider = provider_from_source(f"csv:{tmp_path}", tmp_path / "cache")
        assert len(provider.fetch(eurusd, FAR_FUTURE, 10)) == 2
    assert len(CsvProvider(tmp_path).fetch(eurusd, FAR_FUTURE, 10)) == 2
    assert CsvProvider(tmp_path).reader is SHARED_CSV_FILES and len(parses) == 1
    own = CsvProvider(tmp_path, BarFileReader())  # one given its own reader keeps to it
    assert len(own.fetch(eurusd, FAR_FUTURE, 10)) == 2 and own.reader.files_parsed == 1 and len(parses) == 2


@pytest.mark.shared_data
def test_cached_fetch_of_a_shared_file_does_not_reparse(market_dir: Path) -> None:
    provider = CsvProvider(market_dir, BarFileReader())
    btc = default_instrument("BTCUSDT")
    for hour in range(12):
        provider.fetch(btc, datetime(2025, 6, 1, hour, tzinfo=UTC), 300)
    assert provider.reader.files_parsed == 1


def test_write_then_read_round_trips_exactly(tmp_path: Path) -> None:
    index = pd.DatetimeIndex(["2025-01-06T00:00Z", "2025-01-06T01:00Z"], name="timestamp").as_unit("ns")
    frame = pd.DataFrame(
        {
            "open": [1.1, 0.1 + 0.2],
            "high": [1.2, 0.5],
            "low": [1.0, 0.2],
            "close": [1.15, 0.3],
            "volume": [10.0, np.nan],
        },
        index=index,
    )
    path = tmp_path / "out" / "X_1h.csv"
    write_bar_csv(frame, path)
    assert path.read_text(encoding="utf-8").splitlines()[0] == HEADER
    assert path.read_text(encoding="utf-8").splitlines()[1].startswith("2025-01-06T00:00:00Z,")
    pd.testing.assert_frame_equal(read_bar_csv(path), frame)
    assert [p.name for p in path.parent.iterdir()] == ["X_1h.csv"]


def test_factory_builds_csv_provider(tmp_path: Path) -> None:
    provider = provider_from_source(f"csv:{tmp_path}", tmp_path / "cache")
    assert isinstance(provider, DeferredProvider) and provider.name == f"csv:{tmp_path}"
    built = provider.built()
    assert isinstance(built, CsvProvider) and built.name == provider.name and provider.built() is built


def test_factory_builds_yfinance_provider(tmp_path: Path) -> None:
    provider = provider_from_source("yfinance", tmp_path / "cache")
    assert isinstance(provider, DeferredProvider) and provider.name == "yfinance"
    built = provider.built()
    assert isinstance(built, YFinanceProvider) and built.name == "yfinance"
    assert built.cache is not None and built.cache.directory == tmp_path / "cache"


def test_the_factorys_provider_is_built_once_by_the_first_fetch_of_any_thread(tmp_path: Path) -> None:
    _write(tmp_path, HEADER + "\n" + GOOD_ROWS)
    built: list[CsvProvider] = []

    def build() -> CsvProvider:
        time.sleep(0.05)  # long enough for the other threads to arrive while it builds
        built.append(CsvProvider(tmp_path, BarFileReader()))
        return built[-1]

    provider = DeferredProvider(f"csv:{tmp_path}", build)
    eurusd = default_instrument("EURUSD")
    with ThreadPoolExecutor(max_workers=8) as pool:
        sizes = list(pool.map(lambda _: len(provider.fetch(eurusd, FAR_FUTURE, 10)), range(16)))
    assert sizes == [2] * 16 and len(built) == 1 and provider.built() is built[0]


def test_a_process_that_builds_the_factorys_provider_but_reads_no_bars_never_loads_pandas(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from data.market.providers import DeferredProvider, provider_from_source\n"
        f"provider_from_source('csv:{tmp_path}', Path('cache'))\n"
        "provider_from_source('yfinance', Path('cache'))\n"
        "print('pandas' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("source", ["", "yahoo", "csv:", "csv", "CSV:/tmp", "postgres://x"])
def test_factory_rejects_unknown_sources(tmp_path: Path, source: str) -> None:
    with pytest.raises(ValueError, match=r"TRADEBOT_DATA_SOURCE must be 'yfinance' or 'csv:DIR', was '"):
        provider_from_source(source, tmp_path)


def test_factory_rejects_missing_csv_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=r"nope'?, which does not exist"):
        provider_from_source(f"csv:{missing}", tmp_path)


@pytest.mark.shared_data
def test_factory_csv_provider_serves_shared_data(market_dir: Path, tmp_path: Path) -> None:
    provider = provider_from_source(f"csv:{market_dir}", tmp_path / "cache")
    assert len(provider.fetch(default_instrument("EURUSD"), FAR_FUTURE, 250)) == 250


def test_nse_hourly_bars_are_built_from_the_five_minute_file_when_no_hourly_file_exists(tmp_path: Path) -> None:
    times = pd.date_range("2025-01-06T03:45:00Z", periods=75, freq="5min")  # one session, 09:15-15:25 IST
    close = np.arange(75, dtype=float) + 100.0
    five = pd.DataFrame(
        {"open": close - 0.5, "high": close + 1, "low": close - 1, "close": close, "volume": 0.0},
        index=pd.DatetimeIndex(times, name="timestamp"),
    )
    write_bar_csv(five, tmp_path / "NIFTY50_5m.csv")
    provider = CsvProvider(tmp_path, BarFileReader())
    hourly = replace(default_instrument("NIFTY50"), interval=Interval.H1)
    frame = provider.fetch(hourly, FAR_FUTURE, 100)
    assert [t.strftime("%H:%M") for t in frame.index] == ["03:45", "04:45", "05:45", "06:45", "07:45", "08:45", "09:45"]
    assert frame["close"].iloc[-1] == 174.0 and frame["open"].iloc[0] == 99.5
    provider.fetch(hourly, FAR_FUTURE, 100)
    assert provider.reader.files_parsed == 1  # the 5-minute file is parsed once while it is unchanged
    at_close = datetime(2025, 1, 6, 10, 0, 20, tzinfo=UTC)  # 15:30:20 IST: the 15:15 hour has just closed
    assert len(provider.fetch(hourly, at_close, 100)) == 7
    assert len(provider.fetch(hourly, at_close - timedelta(minutes=1), 100)) == 6
    us = replace(default_instrument("SPY"), interval=Interval.H1)
    with pytest.raises(ProviderError, match=r"SPY_1h\.csv does not exist"):
        provider.fetch(us, FAR_FUTURE, 100)  # only NSE hours are built: other markets' hours are clock hours


def _closed_tail_by_every_bar(frame: pd.DataFrame, interval: Interval, end: datetime, bars: int, calendar):  # type: ignore[no-untyped-def]
    """`closed_tail`'s rule from every bar's close: the latest `bars` rows whose bar closed by `end`, in row order."""
    times = frame.index.as_unit("ns").asi8
    closed = np.flatnonzero(calendar.bar_closes(times, interval) <= to_nanos(end))
    return frame.iloc[np.sort(closed[np.argsort(times[closed], kind="stable")][-bars:])]


GRID_ROWS = 5 * 96


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["XNSE", "XNYS", "FX"]),
    interval=st.sampled_from([Interval.M5, Interval.M15, Interval.H1]),
    copies=st.lists(st.sampled_from([0, 1, 1, 1, 1, 1, 2]), min_size=GRID_ROWS, max_size=GRID_ROWS),
    day=st.integers(0, 4),
    after=st.sampled_from([-61, -45, -31, -30, -15, -1, 0, 1, 15, 30, 45, 59, 60, 61, 600]),
    bars=st.integers(1, 400),
)
def test_the_closed_tail_of_a_sorted_file_reads_only_its_last_bars_and_finds_what_every_bar_would(
    name: str, interval: Interval, copies: list[int], day: int, after: int, bars: int
) -> None:
    """Five days of quarter hours from 08:30 IST, each row missing, once or twice (a duplicate time): NSE's hours start
    09:15 and its last one is cut at the 15:30 close; `end` minutes from a session's close (where bars are cut)."""
    first = datetime(2024, 3, 4, 3, 0, tzinfo=UTC)
    grid = [first + timedelta(minutes=15 * k) for k in range(GRID_ROWS)]
    index = pd.DatetimeIndex([t for t, n in zip(grid, copies, strict=True) for _ in range(n)])
    frame = pd.DataFrame({c: np.arange(len(index), dtype=np.float64) for c in CSV_HEADER[1:]}, index=index)
    calendar = get_calendar(name)
    session = calendar.session(first.date() + timedelta(days=day))
    end = (first if session is None else session[1]) + timedelta(minutes=after)
    tail = closed_tail(frame, interval, end, bars, calendar)
    assert tail.equals(_closed_tail_by_every_bar(frame, interval, end, bars, calendar))


@pytest.mark.parametrize("name", ["XNSE", "FX", None])
@pytest.mark.parametrize("ordered", [True, False])
def test_a_served_tail_shares_no_memory_with_the_kept_frame(name: str | None, ordered: bool) -> None:
    """A view of the frame a reader or cache keeps would be listed in that frame's references with every column read
    from it, and pandas sweeps the dead ones out only every few hundred: each kept file carried up to ~1,000 of them
    (~500 on its values, as many on its index). Every path of `closed_tail` hands out values and an index of its own."""
    first = datetime(2024, 3, 4, 3, 0, tzinfo=UTC)
    index = pd.DatetimeIndex([first + timedelta(hours=k) for k in range(200)])
    frame = pd.DataFrame({c: np.arange(200, dtype=np.float64) for c in CSV_HEADER[1:]}, index=index)
    if not ordered:
        frame = frame.iloc[np.r_[150:200, 0:150]]
    calendar = get_calendar(name) if name is not None else None
    tail = closed_tail(frame, Interval.H1, first + timedelta(days=30), 50, calendar)
    assert len(tail) > 0
    assert tail.index.dtype == frame.index.dtype and tail.index.name == frame.index.name
    assert list(tail.columns) == list(frame.columns) and (tail.dtypes == np.float64).all()
    assert tail.index is not frame.index
    assert not np.shares_memory(tail.to_numpy(), frame.to_numpy())
    assert not np.shares_memory(tail.index.asi8, frame.index.asi8)
    for column in tail.columns:
        assert not np.shares_memory(tail[column].to_numpy(), frame[column].to_numpy())
