"""YFinanceProvider against an injected download serving real shared bars in yfinance 1.7's shape."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yfinance
from yfinance.exceptions import YFRateLimitError

from data.market.cache import BarCache, merge_bars
from data.market.csv_provider import read_bar_csv, write_bar_csv
from data.market.yfinance_provider import (
    YahooDownloadError,
    YFinanceProvider,
    is_rate_limit,
    normalise_yahoo_frame,
    yahoo_download,
)
from engine.catalog import default_instrument
from engine.domain import Interval
from engine.ports import ProviderError
from tests.fakes.yfinance_frames import EMPTY, FakeDownload, sleeps_recorder, yahoo_empty_frame, yahoo_frame
from tests.support import shared_bars

SPY = default_instrument("SPY")  # 5m, XNYS
EURUSD = default_instrument("EURUSD")  # 1h, FX
SPY_DAILY = replace(SPY, interval=Interval.D1)
MID_SESSION = datetime(2025, 6, 12, 15, 42, tzinfo=UTC)  # Thursday 11:42 New York; the 15:40Z bar is forming


def spy_5m() -> pd.DataFrame:
    return shared_bars("SPY", "5m").to_frame()


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected sleep({seconds})")


def provider(download: FakeDownload, cache_dir: Path | None = None, **kwargs: object) -> YFinanceProvider:
    kwargs.setdefault("sleep", no_sleep)
    kwargs.setdefault("cache_save_seconds", 0.0)  # every fetch writes its file, which these tests read
    return YFinanceProvider(cache_dir, download=download, **kwargs)  # type: ignore[arg-type]


def test_intraday_frame_is_converted_to_utc_and_forming_bar_dropped() -> None:
    source = spy_5m()
    fake = FakeDownload(source, "SPY", Interval.M5)
    frame = provider(fake).fetch(SPY, MID_SESSION, 200)

    raw = fake(**fake.calls[0])
    assert str(raw.index.tz) == "America/New_York"
    assert raw.index[-1] == pd.Timestamp("2025-06-12T11:40", tz="America/New_York")  # Yahoo serves it, forming
    assert frame.index[-1] == pd.Timestamp("2025-06-12T15:35Z")
    pd.testing.assert_frame_equal(frame, source.loc[: pd.Timestamp("2025-06-12T15:35Z")].tail(200), check_freq=False)
    assert str(frame.index.tz) == "UTC" and frame.index.name == "timestamp"


def test_download_is_called_with_unadjusted_prices_and_a_window_inside_yahoos_limit() -> None:
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5)
    provider(fake).fetch(SPY, MID_SESSION, 200)
    (call,) = fake.calls
    assert call["tickers"] == "SPY"
    assert call["interval"] == "5m"
    assert call["auto_adjust"] is False
    assert call["progress"] is False
    assert call["end"] == MID_SESSION
    # 200 bars of a 6.5 h session need about a week; the window allows holidays and stays under 60 days.
    assert MID_SESSION - timedelta(days=60) < call["start"] <= MID_SESSION - timedelta(days=7)

    many = FakeDownload(spy_5m(), "SPY", Interval.M5)
    frame = provider(many).fetch(SPY, MID_SESSION, 100_000)
    assert many.calls[0]["start"] == MID_SESSION - timedelta(days=59)
    assert frame.index[0] >= pd.Timestamp(MID_SESSION - timedelta(days=59))


def test_flat_columns_give_the_same_bars() -> None:
    source = spy_5m()
    two_level = provider(FakeDownload(source, "SPY", Interval.M5)).fetch(SPY, MID_SESSION, 300)
    flat = provider(FakeDownload(source, "SPY", Interval.M5, multi_level=False)).fetch(SPY, MID_SESSION, 300)
    pd.testing.assert_frame_equal(two_level, flat)


def test_daily_bars_are_labelled_by_trading_date_and_today_is_dropped() -> None:
    source = shared_bars("SPY", "1d").to_frame()
    fake = FakeDownload(source, "SPY", Interval.D1)
    frame = provider(fake).fetch(SPY_DAILY, MID_SESSION, 250)

    raw = fake(**fake.calls[0])
    assert raw.index.tz is None and raw.index[-1] == pd.Timestamp("2025-06-12")  # today's bar, still forming
    assert frame.index[-1] == pd.Timestamp("2025-06-11T00:00Z")
    assert len(frame) == 250
    pd.testing.assert_frame_equal(frame, source.loc[: pd.Timestamp("2025-06-11T00:00Z")].tail(250), check_freq=False)
    assert fake.calls[0]["interval"] == "1d"

    after_midnight = provider(FakeDownload(source, "SPY", Interval.D1)).fetch(
        SPY_DAILY, datetime(2025, 6, 13, 0, 0, tzinfo=UTC), 5
    )
    assert after_midnight.index[-1] == pd.Timestamp("2025-06-12T00:00Z")


def test_tz_aware_daily_index_is_labelled_by_local_date() -> None:
    source = shared_bars("SPY", "1d").to_frame().tail(3)
    yahoo = yahoo_frame(source, "SPY", Interval.D1)
    yahoo.index = yahoo.index.tz_localize("America/New_York")
    assert list(normalise_yahoo_frame(yahoo, "SPY", Interval.D1).index) == list(source.index)


def test_all_nan_padding_rows_are_dropped() -> None:
    source = spy_5m()
    pad = pd.Timestamp("2025-06-11T03:00", tz="America/New_York")
    fake = FakeDownload(source, "SPY", Interval.M5, pad_at=[pad])
    frame = provider(fake).fetch(SPY, MID_SESSION, 200)
    assert pad.tz_convert("UTC") not in frame.index
    assert not frame.isna().any().any()
    assert len(frame) == 200


def test_hourly_maps_to_yahoos_60m() -> None:
    source = shared_bars("EURUSD", "1h").to_frame()
    fake = FakeDownload(source, "EURUSD=X", Interval.H1)
    end = datetime(2025, 3, 12, 15, 30, tzinfo=UTC)
    frame = provider(fake).fetch(EURUSD, end, 500)
    assert fake.calls[0]["interval"] == "60m"
    assert fake.calls[0]["tickers"] == "EURUSD=X"
    assert frame.index[-1] == pd.Timestamp("2025-03-12T14:00Z")
    pd.testing.assert_frame_equal(frame, source.loc[: pd.Timestamp("2025-03-12T14:00Z")].tail(500), check_freq=False)


def test_four_hour_bars_are_refused_without_downloading() -> None:
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5)
    with pytest.raises(ProviderError, match=r"no 4h bars for EURUSD; configure 1h"):
        provider(fake).fetch(replace(EURUSD, interval=Interval.H4), MID_SESSION, 100)
    assert fake.calls == []


def test_rate_limits_are_retried_with_exponential_backoff() -> None:
    slept, sleep = sleeps_recorder()
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5, script=[YFRateLimitError(), YFRateLimitError()])
    frame = provider(fake, sleep=sleep).fetch(SPY, MID_SESSION, 100)
    assert slept == [2.0, 4.0]
    assert len(fake.calls) == 3
    assert len(frame) == 100


def test_rate_limit_recognised_by_message() -> None:
    slept, sleep = sleeps_recorder()
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5, script=[RuntimeError("HTTP Error 429: Too Many Requests")])
    provider(fake, sleep=sleep, backoff_seconds=0.5).fetch(SPY, MID_SESSION, 100)
    assert slept == [0.5]
    assert is_rate_limit(ConnectionError("Rate limit exceeded"))
    assert not is_rate_limit(ValueError("no price data found"))


def test_empty_frames_are_retried() -> None:
    slept, sleep = sleeps_recorder()
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5, script=[EMPTY, EMPTY])
    assert len(provider(fake, sleep=sleep).fetch(SPY, MID_SESSION, 100)) == 100
    assert slept == [2.0, 4.0]


def test_gives_up_after_max_retries_saying_what_happened() -> None:
    slept, sleep = sleeps_recorder()
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5, script=[YFRateLimitError()] * 4)
    with pytest.raises(ProviderError) as info:
        provider(fake, sleep=sleep).fetch(SPY, MID_SESSION, 100)
    message = str(info.value)
    assert "Yahoo Finance SPY 5m bars" in message
    assert "gave up after 4 attempts, last: rate limited by Yahoo (YFRateLimitError: Too Many Requests" in message
    assert slept == [2.0, 4.0, 8.0]
    assert len(fake.calls) == 4

    empties = FakeDownload(spy_5m(), "SPY", Interval.M5, script=[EMPTY])
    with pytest.raises(ProviderError, match=r"gave up after 1 attempt, last: Yahoo returned no bars"):
        provider(empties, max_retries=0).fetch(SPY, MID_SESSION, 100)


def test_other_errors_fail_at_once() -> None:
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5, script=[KeyError("chart")])
    with pytest.raises(ProviderError, match=r"SPY 5m bars .* failed: KeyError: 'chart'"):
        provider(fake).fetch(SPY, MID_SESSION, 100)
    assert len(fake.calls) == 1


def test_bad_frames_are_provider_errors() -> None:
    source = spy_5m().tail(10)
    naive = yahoo_frame(source, "SPY", Interval.M5)
    naive.index = naive.index.tz_localize(None)
    with pytest.raises(ProviderError, match="carry no timezone"):
        normalise_yahoo_frame(naive, "SPY", Interval.M5)
    missing = yahoo_frame(source, "SPY", Interval.M5, multi_level=False).drop(columns=["Volume"])
    with pytest.raises(ProviderError, match="lacks column"):
        normalise_yahoo_frame(missing, "SPY", Interval.M5)
    two = pd.concat([yahoo_frame(source, "QQQ", Interval.M5), yahoo_frame(source, "AAPL", Interval.M5)], axis=1)
    with pytest.raises(ProviderError, match="not for SPY"):
        normalise_yahoo_frame(two, "SPY", Interval.M5)
    assert normalise_yahoo_frame(yahoo_empty_frame("SPY"), "SPY", Interval.M5).empty


def test_ticker_is_picked_from_multi_ticker_frames() -> None:
    source = spy_5m().tail(10)
    both = pd.concat([yahoo_frame(source * 2, "QQQ", Interval.M5), yahoo_frame(source, "SPY", Interval.M5)], axis=1)
    frame = normalise_yahoo_frame(both, "SPY", Interval.M5)
    np.testing.assert_array_equal(frame["close"].to_numpy(), source["close"].to_numpy())


# --- disk cache -------------------------------------------------------------------------------------


def test_second_fetch_downloads_only_the_tail(tmp_path: Path) -> None:
    source = spy_5m()
    fake = FakeDownload(source, "SPY", Interval.M5)
    yf = provider(fake, tmp_path)
    yf.fetch(SPY, MID_SESSION, 200)
    cache_file = tmp_path / "SPY_5m.csv"
    cached = read_bar_csv(cache_file)
    assert cached.index[-1] == pd.Timestamp("2025-06-12T15:35Z")  # the forming bar is never cached

    later = MID_SESSION + timedelta(hours=1)
    frame = yf.fetch(SPY, later, 200)
    assert fake.calls[1]["start"] == datetime(2025, 6, 12, 15, 20, tzinfo=UTC)  # last cached bar - 3 bars
    assert fake.calls[1]["end"] == later
    pd.testing.assert_frame_equal(frame, source.loc[: pd.Timestamp("2025-06-12T16:35Z")].tail(200), check_freq=False)
    assert read_bar_csv(cache_file).index[-1] == pd.Timestamp("2025-06-12T16:35Z")


def test_merge_lets_the_new_download_override_cached_bars(tmp_path: Path) -> None:
    source = spy_5m()
    fake = FakeDownload(source, "SPY", Interval.M5)
    yf = provider(fake, tmp_path)
    yf.fetch(SPY, MID_SESSION, 200)
    revised_at = pd.Timestamp("2025-06-12T15:30Z")
    new_close = float(source.loc[revised_at, "high"])
    assert source.loc[revised_at, "close"] != new_close
    fake.revisions = {revised_at: {"close": new_close, "volume": 123.0}}

    frame = yf.fetch(SPY, MID_SESSION + timedelta(minutes=10), 200)
    assert frame.loc[revised_at, "close"] == new_close
    assert frame.loc[revised_at, "volume"] == 123.0
    assert read_bar_csv(tmp_path / "SPY_5m.csv").loc[revised_at, "close"] == new_close
    assert frame.index.is_unique


def test_cache_is_replaced_atomically(tmp_path: Path) -> None:
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5)
    yf = provider(fake, tmp_path)
    yf.fetch(SPY, MID_SESSION, 200)
    cache_file = tmp_path / "SPY_5m.csv"
    inode = cache_file.stat().st_ino
    yf.fetch(SPY, MID_SESSION + timedelta(hours=1), 200)
    assert cache_file.stat().st_ino != inode  # a new file was renamed over it, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SPY_5m.csv"]  # no temp files left behind


def test_failed_incremental_download_does_not_serve_the_stale_cache(tmp_path: Path) -> None:
    slept, sleep = sleeps_recorder()
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5)
    yf = provider(fake, tmp_path, sleep=sleep)
    yf.fetch(SPY, MID_SESSION, 200)
    fake.script = [YFRateLimitError()] * 4
    with pytest.raises(ProviderError, match=r"cached bars up to 2025-06-12T15:35Z were not used because they may be"):
        yf.fetch(SPY, MID_SESSION + timedelta(hours=1), 200)
    assert slept == [2.0, 4.0, 8.0]


def test_replay_inside_the_cache_needs_no_download(tmp_path: Path) -> None:
    source = spy_5m()
    fake = FakeDownload(source, "SPY", Interval.M5)
    yf = provider(fake, tmp_path)
    yf.fetch(SPY, MID_SESSION, 500)
    earlier = MID_SESSION - timedelta(hours=2)
    frame = yf.fetch(SPY, earlier, 100)
    assert len(fake.calls) == 1
    pd.testing.assert_frame_equal(frame, source.loc[: pd.Timestamp("2025-06-12T13:35Z")].tail(100), check_freq=False)


def test_short_cache_is_backfilled(tmp_path: Path) -> None:
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5)
    yf = provider(fake, tmp_path)
    yf.fetch(SPY, MID_SESSION, 50)
    frame = yf.fetch(SPY, MID_SESSION + timedelta(minutes=5), 1500)
    assert fake.calls[1]["start"] < fake.calls[0]["start"] - timedelta(days=7)
    assert len(frame) == 1500


def test_cache_older_than_yahoos_history_is_replaced_not_bridged(tmp_path: Path) -> None:
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5)
    yf = provider(fake, tmp_path)
    yf.fetch(SPY, MID_SESSION, 200)
    much_later = MID_SESSION + timedelta(days=70)
    yf.fetch(SPY, much_later, 200)
    start = fake.calls[1]["start"]
    assert much_later - timedelta(days=60) < start < much_later - timedelta(days=7)
    cached = read_bar_csv(tmp_path / "SPY_5m.csv")
    assert cached.index[0] >= pd.Timestamp(start)  # no two-month hole inside the cached history


def test_corrupt_cache_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    (tmp_path / "SPY_5m.csv").write_text("not,a,bar,file\n1,2,3,4\n", encoding="utf-8")
    fake = FakeDownload(spy_5m(), "SPY", Interval.M5)
    assert len(provider(fake, tmp_path).fetch(SPY, MID_SESSION, 200)) == 200
    assert (tmp_path / "SPY_5m.csv.corrupt").read_text(encoding="utf-8").startswith("not,a,bar")
    assert read_bar_csv(tmp_path / "SPY_5m.csv").index[-1] == pd.Timestamp("2025-06-12T15:35Z")


class Monotonic:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def hourly_saving(folder: Path) -> tuple[pd.DataFrame, Monotonic, FakeDownload, YFinanceProvider, BarCache]:
    """SPY 5m bars, a clock the test moves, the stand-in download and a provider whose cache writes at most hourly."""
    source, clock = spy_5m(), Monotonic()
    fake = FakeDownload(source, "SPY", Interval.M5)
    yf = provider(fake, folder, cache_save_seconds=3600.0, monotonic=clock)
    assert yf.cache is not None
    return source, clock, fake, yf, yf.cache


def test_the_cache_file_is_written_at_once_then_at_most_every_save_interval(tmp_path: Path) -> None:
    source, clock, _, yf, cache = hourly_saving(tmp_path)
    cache_file = tmp_path / "SPY_5m.csv"
    yf.fetch(SPY, MID_SESSION, 200)  # a new cache: written at once
    first = cache_file.stat()
    assert cache.files_written == 1 and read_bar_csv(cache_file).index[-1] == pd.Timestamp("2025-06-12T15:35Z")

    for minutes in range(5, 60, 5):  # one new bar a run, within the hour: served from memory, the file unchanged
        clock.seconds += 300
        now = MID_SESSION + timedelta(minutes=minutes)
        frame = yf.fetch(SPY, now, 200)
        closed = now.replace(second=0) - timedelta(minutes=5 + now.minute % 5)
        pd.testing.assert_frame_equal(frame, source.loc[: pd.Timestamp(closed)].tail(200), check_freq=False)
    assert cache.files_written == 1 and cache.files_read == 0
    assert cache_file.stat().st_mtime_ns == first.st_mtime_ns and cache_file.stat().st_ino == first.st_ino

    clock.seconds += 300  # an hour after the write: the next run writes what it holds
    frame = yf.fetch(SPY, MID_SESSION + timedelta(hours=1), 200)
    assert cache.files_written == 2
    on_disk = read_bar_csv(cache_file)
    pd.testing.assert_frame_equal(on_disk.tail(200), frame, check_freq=False, check_exact=True)
    assert on_disk.index[-1] == pd.Timestamp("2025-06-12T16:35Z")


def test_a_restart_downloads_again_what_was_not_yet_written(tmp_path: Path) -> None:
    _, _, fake, running, _ = hourly_saving(tmp_path)
    running.fetch(SPY, MID_SESSION, 200)
    later = MID_SESSION + timedelta(minutes=30)
    held = running.fetch(SPY, later, 200)  # six bars newer than the file
    assert read_bar_csv(tmp_path / "SPY_5m.csv").index[-1] == pd.Timestamp("2025-06-12T15:35Z")

    restarted = provider(fake, tmp_path, cache_save_seconds=3600.0, monotonic=Monotonic())  # kill -9, a new process
    again = restarted.fetch(SPY, later, 200)
    pd.testing.assert_frame_equal(again, held, check_exact=True)
    assert fake.calls[-1]["start"] == datetime(2025, 6, 12, 15, 20, tzinfo=UTC)  # from the file's last bar - 3


def test_a_backfill_or_a_file_another_process_wrote_is_not_held_back(tmp_path: Path) -> None:
    source, _, _, yf, cache = hourly_saving(tmp_path)
    cache_file = tmp_path / "SPY_5m.csv"
    yf.fetch(SPY, MID_SESSION, 200)
    yf.fetch(SPY, MID_SESSION, 2000)  # ten times the history: older bars are added, so it is written at once
    assert cache.files_written == 2 and len(read_bar_csv(cache_file)) > 1000  # all the source holds by then

    other = source.loc[: pd.Timestamp("2025-06-12T15:35Z")].tail(50).copy()
    other["close"] = other["close"] + 0.01  # another process (a `tradebot scan`) rewrote the file
    write_bar_csv(other, cache_file)
    frame = yf.fetch(SPY, MID_SESSION, 50)
    assert cache.files_read == 1  # its file is read, not this process's held bars
    assert frame["close"].iloc[0] == pytest.approx(float(other["close"].iloc[0]))


def test_merging_a_download_equals_the_union_where_the_download_wins() -> None:
    bars = spy_5m().tail(300)
    rng = np.random.default_rng(7)
    for _ in range(300):
        cut = int(rng.integers(1, 300))
        first = int(rng.integers(max(cut - 6, 0), cut + 1))  # the download starts a few bars back, or at the end
        old, new = bars.iloc[:cut], bars.iloc[first:].copy()
        new["close"] = new["close"] + float(rng.choice([0.0, 0.01]))  # a revision of the overlap, or none
        if len(new) > 2 and rng.random() < 0.3:
            new = new.drop(new.index[int(rng.integers(0, min(len(new), cut - first + 1)))])  # a bar it lacks
        union = pd.concat([old, new])
        expected = union[~union.index.duplicated(keep="last")].sort_index(kind="stable")
        pd.testing.assert_frame_equal(merge_bars(old, new), expected, check_exact=True, check_freq=False)


def test_cache_file_names_are_unambiguous(tmp_path: Path) -> None:
    cache = BarCache(tmp_path)
    assert cache.path("EURUSD=X", Interval.H1).name == "EURUSD%3DX_1h.csv"
    assert cache.path("^NSEI", Interval.M5).name == "%5ENSEI_5m.csv"
    assert cache.path("EURUSD_X", Interval.H1) != cache.path("EURUSD=X", Interval.H1)


def test_unsorted_cache_file_is_loaded_sorted_and_unique(tmp_path: Path) -> None:
    bars = spy_5m().tail(5)
    shuffled = pd.concat([bars.iloc[[3, 0, 2]], bars.iloc[[0]] * 1.001, bars.iloc[[1, 4]]])
    write_bar_csv(shuffled, BarCache(tmp_path).path("SPY", Interval.M5))
    loaded = BarCache(tmp_path).load("SPY", Interval.M5)
    assert list(loaded.index) == list(bars.index)
    assert loaded["close"].to_numpy()[0] == pytest.approx(bars["close"].to_numpy()[0] * 1.001)


# --- the default download -------------------------------------------------------------------------------


def test_default_download_raises_what_yfinance_only_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    def logging_download(**kwargs: object) -> pd.DataFrame:
        assert kwargs["threads"] is False
        logger = logging.getLogger("yfinance")
        logger.error("\n1 Failed download:")
        logger.error("['SPY']: " + repr(YFRateLimitError()))
        return yahoo_empty_frame("SPY")

    monkeypatch.setattr(yfinance, "download", logging_download)
    with pytest.raises(YFRateLimitError):
        yahoo_download(tickers="SPY", interval="5m", progress=False)

    def delisted(**kwargs: object) -> pd.DataFrame:
        logging.getLogger("yfinance").error("['ZZZZ']: possibly delisted; no price data found (5m)")
        return yahoo_empty_frame("ZZZZ")

    monkeypatch.setattr(yfinance, "download", delisted)
    with pytest.raises(YahooDownloadError, match=r"^possibly delisted; no price data found \(5m\)$"):
        yahoo_download(tickers="ZZZZ", interval="5m", progress=False)
    yf = YFinanceProvider(None, sleep=no_sleep)
    with pytest.raises(ProviderError, match="failed: YahooDownloadError: possibly delisted"):
        yf.fetch(replace(SPY, ticker="ZZZZ"), MID_SESSION, 10)


def test_default_download_returns_frames_despite_other_tickers_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    source = spy_5m().tail(20)

    def download(**kwargs: object) -> pd.DataFrame:
        logging.getLogger("yfinance").error("['QQQ']: YFRateLimitError('Too Many Requests')")
        return yahoo_frame(source, "SPY", Interval.M5)

    monkeypatch.setattr(yfinance, "download", download)
    frame = yahoo_download(tickers="SPY", interval="5m")
    assert frame is not None and len(frame) == 20


def test_constructor_rejects_bad_retry_settings() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        YFinanceProvider(None, max_retries=-1)
    with pytest.raises(ValueError, match="backoff_seconds"):
        YFinanceProvider(None, backoff_seconds=float("nan"))
