"""Bars from Yahoo Finance through `yfinance.download`, with retries and an incremental on-disk cache.

What `yfinance.download` (1.7) returns and how it is normalised:

* columns are two-level (Price, Ticker) by default, flat with `multi_level_index=False`; both are accepted,
  names are lower-cased and `Adj Close` is ignored (prices are unadjusted, `auto_adjust=False`);
* intraday indexes are tz-aware in the exchange's timezone and are converted to UTC; daily indexes are
  the local trading DATE (naive by default) and each bar is labelled `DATE T00:00:00Z`, the convention of
  the shared daily CSVs, so a daily bar counts as closed at the following midnight UTC;
* the still-forming last bar (open + interval > end) is dropped, as are all-NaN padding rows;
* per-ticker failures are logged by yfinance, not raised: the default download captures those log
  records and re-raises them, so a rate limit is retried and a delisted ticker fails at once.

Intervals: ours map to Yahoo's (`1h` is Yahoo's `60m`). Yahoo has no 4-hour bars; a 4h instrument is
refused with a ProviderError rather than built here, because the engine resamples from 1h itself
(`MarketContext.higher`) and a 4h bar aggregated before validation would hide a corrupt 1h bar.
Intraday history is limited (1m: last 7 days, 5m/15m/30m: 60 days, 1h: 730 days); requests stay a day
inside those limits.

Retries: rate limits (`YFRateLimitError`, or a message saying "Too Many Requests"/"rate limit") and empty
answers are retried up to `max_retries` times after the first attempt, sleeping `backoff_seconds * 2**k`
(2, 4, 8 s by default); any other exception is a ProviderError at once.

Cache (`cache_dir` set): each fetch downloads only from the last cached bar minus three bars of overlap
(revisions of recent bars win) up to `end`, merges, saves atomically and serves from the merged history.
When the cache is too short for `bars` it is backfilled with one full-window download; when its last bar
is older than Yahoo's history limit, a fresh window replaces it so the history has no hole. If the
download fails, the fetch fails even if the cache has data: serving it could show a trader a stale
market as current. Only a cache that already holds a bar after `end` (a replay of the past) is served
without downloading.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from data.market.cache import CACHE_SAVE_SECONDS, BarCache, merge_bars
from data.market.csv_provider import INDEX_NAME, closed_tail, empty_bar_frame, session_calendar
from engine.bars import OHLCV_COLUMNS
from engine.calendars import get_calendar
from engine.domain import Instrument, Interval, ensure_utc
from engine.ports import ProviderError

DownloadFn = Callable[..., pd.DataFrame | None]
SleepFn = Callable[[float], None]

YAHOO_INTERVALS: Final[dict[Interval, str]] = {
    Interval.M1: "1m",
    Interval.M5: "5m",
    Interval.M15: "15m",
    Interval.M30: "30m",
    Interval.H1: "60m",
    Interval.D1: "1d",
}
YAHOO_HISTORY_LIMITS: Final[dict[Interval, timedelta]] = {
    Interval.M1: timedelta(days=7),
    Interval.M5: timedelta(days=60),
    Interval.M15: timedelta(days=60),
    Interval.M30: timedelta(days=60),
    Interval.H1: timedelta(days=730),
}
LIMIT_MARGIN: Final = timedelta(days=1)
OVERLAP_BARS: Final = 3
BACKFILL_SLACK: Final = timedelta(days=5)
_RATE_LIMIT_WORDS: Final = ("too many requests", "rate limit")
_YAHOO_LOGGER: Final = "yfinance"

log = logging.getLogger(__name__)


class YahooDownloadError(Exception):
    """yfinance reported a per-ticker failure in its log instead of raising."""


def is_rate_limit(exc: BaseException) -> bool:
    """Whether `exc` means Yahoo is throttling us (worth waiting and retrying)."""
    if any(cls.__name__ == "YFRateLimitError" for cls in type(exc).__mro__):
        return True
    text = str(exc).lower()
    return any(word in text for word in _RATE_LIMIT_WORDS)


class _TickerErrors(logging.Handler):
    """Collects the error lines yfinance logs about one ticker."""

    def __init__(self, ticker: str) -> None:
        super().__init__(logging.ERROR)
        self.ticker = ticker.upper()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if self.ticker in text.upper():
            self.messages.append(text.replace(f"['{self.ticker}']: ", "").strip())


def yahoo_download(**kwargs: Any) -> pd.DataFrame | None:
    """Call `yfinance.download` (imported here, lazily), raising the per-ticker errors it only logs."""
    import yfinance  # noqa: PLC0415 - importing yfinance is slow and pulls in the HTTP stack

    ticker = str(kwargs.get("tickers", ""))
    capture = _TickerErrors(ticker)
    logger = logging.getLogger(_YAHOO_LOGGER)
    logger.addHandler(capture)
    try:
        with warnings.catch_warnings():
            # yfinance's own use of soon-deprecated pandas arguments is not the trader's concern.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            frame = yfinance.download(threads=False, **kwargs)
    finally:
        logger.removeHandler(capture)
    has_rows = frame is not None and not frame.dropna(how="all").empty
    if capture.messages and not has_rows:
        text = "; ".join(capture.messages)
        if any(word in text.lower() for word in _RATE_LIMIT_WORDS):
            from yfinance.exceptions import YFRateLimitError  # noqa: PLC0415

            raise YFRateLimitError()
        raise YahooDownloadError(text)
    return frame


def normalise_yahoo_frame(frame: pd.DataFrame | None, ticker: str, interval: Interval) -> pd.DataFrame:
    """Turn a `yfinance.download` frame into a raw bar frame: UTC open-time index, float OHLCV columns."""
    if frame is None or len(frame.index) == 0:
        return empty_bar_frame()
    if not isinstance(frame, pd.DataFrame):
        raise ProviderError(f"Yahoo returned a {type(frame).__name__} for {ticker}, not a table")
    flat = _single_ticker_columns(frame, ticker)
    by_name: dict[str, Any] = {}
    for column in flat.columns:
        by_name.setdefault(str(column).strip().lower(), column)
    missing = [c for c in OHLCV_COLUMNS if c not in by_name]
    if missing:
        raise ProviderError(
            f"Yahoo data for {ticker} lacks column(s) {', '.join(missing)}; got {', '.join(map(str, flat.columns))}"
        )
    index = flat.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ProviderError(f"Yahoo data for {ticker} is not indexed by time (index is {type(index).__name__})")
    if interval.is_intraday:
        if index.tz is None:
            raise ProviderError(f"Yahoo intraday timestamps for {ticker} carry no timezone; cannot place bars in UTC")
        utc = index.tz_convert("UTC")
    else:
        local = index.tz_localize(None) if index.tz is not None else index
        utc = local.normalize().tz_localize("UTC")
    columns = {
        c: pd.to_numeric(flat[by_name[c]], errors="coerce").to_numpy(np.float64, na_value=np.nan) for c in OHLCV_COLUMNS
    }
    out = pd.DataFrame(columns, index=pd.DatetimeIndex(utc, name=INDEX_NAME).as_unit("ns"))
    prices = out[["open", "high", "low", "close"]].to_numpy()
    return out[~np.isnan(prices).all(axis=1)]


def _single_ticker_columns(frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
    columns = frame.columns
    if not isinstance(columns, pd.MultiIndex):
        return frame
    if columns.nlevels != 2:
        raise ProviderError(f"Yahoo data for {ticker} has {columns.nlevels} column levels, expected 2")
    price_level = next(
        (lvl for lvl in range(2) if "close" in {str(v).strip().lower() for v in columns.get_level_values(lvl)}),
        None,
    )
    if price_level is None:
        raise ProviderError(f"Yahoo data for {ticker} has no Close column")
    ticker_level = 1 - price_level
    tickers = list(dict.fromkeys(str(v) for v in columns.get_level_values(ticker_level)))
    match = [t for t in tickers if t.upper() == ticker.upper()]
    if match:
        chosen = match[0]
    elif len(tickers) == 1:
        chosen = tickers[0]
    else:
        raise ProviderError(f"Yahoo data has columns for {', '.join(tickers)} but not for {ticker}")
    keep = np.asarray([str(v) == chosen for v in columns.get_level_values(ticker_level)])
    selected = frame.loc[:, keep]
    selected.columns = selected.columns.get_level_values(price_level)
    return selected


def _history_window(instrument: Instrument, bars: int) -> timedelta:
    """Calendar time that comfortably holds `bars` bars of the instrument's market (holidays included)."""
    try:
        calendar = get_calendar(instrument.calendar)
    except ValueError as exc:
        raise ProviderError(f"{instrument.symbol}: {exc}") from None
    days_per_week = len(calendar.weekdays)
    if instrument.interval.is_intraday:
        per_week = days_per_week * calendar.session_minutes * 60 / instrument.interval.delta.total_seconds()
    else:
        per_week = days_per_week
    return timedelta(days=math.ceil(bars / per_week * 7 * 1.25) + 5)


class YFinanceProvider:
    """Bars from Yahoo Finance; see the module docstring for the rules."""

    name = "yfinance"

    def __init__(
        self,
        cache_dir: Path | None,
        download: DownloadFn = yahoo_download,
        sleep: SleepFn = time.sleep,
        max_retries: int = 3,
        backoff_seconds: float = 2.0,
        cache_save_seconds: float = CACHE_SAVE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must not be negative, was {max_retries}")
        if not math.isfinite(backoff_seconds) or backoff_seconds < 0:
            raise ValueError(f"backoff_seconds must be a non-negative number, was {backoff_seconds}")
        self.cache = (
            BarCache(cache_dir, save_every=cache_save_seconds, monotonic=monotonic) if cache_dir is not None else None
        )
        self._download = download
        self._sleep = sleep
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds

    def fetch(self, instrument: Instrument, end: datetime, bars: int) -> pd.DataFrame:
        """Return up to `bars` bars closed by `end`, oldest first, downloading what the cache lacks."""
        ensure_utc(end, "end")
        if bars < 1:
            raise ValueError(f"bars must be at least 1, was {bars}")
        interval = instrument.interval
        yahoo_interval = YAHOO_INTERVALS.get(interval)
        if yahoo_interval is None:
            raise ProviderError(
                f"Yahoo Finance has no {interval.value} bars for {instrument.symbol}; configure 1h "
                "(strategies resample to higher timeframes themselves)"
            )
        limit = YAHOO_HISTORY_LIMITS.get(interval)
        earliest = end - limit + LIMIT_MARGIN if limit is not None else None
        start = end - _history_window(instrument, bars)
        if earliest is not None:
            start = max(start, earliest)

        calendar = session_calendar(instrument)  # a session's last bar may close early (NSE 1h: 15:15-15:30)
        base = self.cache.load(instrument.ticker, interval) if self.cache is not None else empty_bar_frame()
        if not base.empty:
            first = base.index[0].to_pydatetime()
            last = base.index[-1].to_pydatetime()
            closed = closed_tail(base, interval, end, bars, calendar)
            enough = len(closed) >= bars or first <= start + BACKFILL_SLACK
            if enough and last + interval.delta > end:
                return closed
            resume = last - interval.delta * OVERLAP_BARS
            if earliest is not None and resume < earliest:
                log.info("%s cache ends %s, beyond Yahoo's history limit: replacing it", instrument.ticker, last)
                base = empty_bar_frame()
            elif enough:
                start = resume

        fresh = self._download_with_retries(instrument, yahoo_interval, start, end, base)
        fresh = closed_tail(fresh, interval, end, len(fresh), calendar) if len(fresh) else fresh
        merged = merge_bars(base, fresh)
        if self.cache is not None and not fresh.empty:
            self.cache.save(instrument.ticker, interval, merged)
        return closed_tail(merged, interval, end, bars, calendar)

    def _download_with_retries(
        self, instrument: Instrument, yahoo_interval: str, start: datetime, end: datetime, cached: pd.DataFrame
    ) -> pd.DataFrame:
        ticker = instrument.ticker
        what = f"Yahoo Finance {ticker} {yahoo_interval} bars from {start:%Y-%m-%d %H:%MZ} to {end:%Y-%m-%d %H:%MZ}"
        reason = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
            try:
                raw = self._download(
                    tickers=ticker,
                    interval=yahoo_interval,
                    start=start,
                    end=end,
                    auto_adjust=False,
                    actions=False,
                    progress=False,
                )
            except Exception as exc:
                if not is_rate_limit(exc):
                    raise ProviderError(f"{what} failed: {_describe(exc)}{_cache_note(cached)}") from exc
                reason = f"rate limited by Yahoo ({_describe(exc)})"
                continue
            frame = normalise_yahoo_frame(raw, ticker, instrument.interval)
            if not frame.empty:
                return frame
            reason = "Yahoo returned no bars"
        attempts = self.max_retries + 1
        raise ProviderError(
            f"{what}: gave up after {attempts} attempt{'s' if attempts > 1 else ''}, last: {reason}"
            f"{_cache_note(cached)}"
        )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cache_note(cached: pd.DataFrame) -> str:
    if cached.empty:
        return ""
    return (
        f"; {len(cached):,} cached bars up to {cached.index[-1]:%Y-%m-%dT%H:%MZ} were not used "
        "because they may be stale"
    )
