"""Frames shaped like `yfinance.download` 1.7 returns them, and a scripted stand-in for that function.

Shape (checked against yfinance 1.7's multi.py and scrapers/history.py): columns are two-level
(Price, Ticker), Price sorted as Adj Close, Close, High, Low, Open, Volume; intraday indexes are tz-aware
in the exchange timezone and named `Datetime`; daily indexes are naive local dates named `Date`; Volume is
int64. Yahoo answers [start, end) by bar open time, so the bar still forming at `end` is included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from engine.domain import Interval

YAHOO_PRICE_COLUMNS: Final = ("Adj Close", "Close", "High", "Low", "Open", "Volume")
EXCHANGE_TZ: Final = {
    "EURUSD=X": "Europe/London",
    "GBPUSD=X": "Europe/London",
    "GC=F": "America/New_York",
    "SPY": "America/New_York",
    "QQQ": "America/New_York",
    "AAPL": "America/New_York",
    "MSFT": "America/New_York",
    "RELIANCE.NS": "Asia/Kolkata",
    "^NSEI": "Asia/Kolkata",
    "BTC-USD": "UTC",
}
EMPTY: Final = "empty"


def yahoo_frame(
    bars: pd.DataFrame, ticker: str, interval: Interval, *, multi_level: bool = True, tz: str | None = None
) -> pd.DataFrame:
    """Reshape a UTC bar frame (open/high/low/close/volume) the way `yfinance.download` returns it."""
    zone = tz or EXCHANGE_TZ[ticker]
    utc = pd.DatetimeIndex(bars.index)
    if interval.is_intraday:
        index = pd.DatetimeIndex(utc.tz_convert(zone), name="Datetime")
    else:
        index = pd.DatetimeIndex(utc.tz_localize(None).normalize(), name="Date")
    data = {
        "Adj Close": bars["close"].to_numpy() * 0.98,
        "Close": bars["close"].to_numpy(),
        "High": bars["high"].to_numpy(),
        "Low": bars["low"].to_numpy(),
        "Open": bars["open"].to_numpy(),
        "Volume": np.nan_to_num(bars["volume"].to_numpy()).astype(np.int64),
    }
    frame = pd.DataFrame(data, index=index)
    if multi_level:
        frame.columns = pd.MultiIndex.from_product([list(YAHOO_PRICE_COLUMNS), [ticker]], names=["Price", "Ticker"])
    return frame


def yahoo_empty_frame(ticker: str) -> pd.DataFrame:
    """What `yfinance.download` returns for a ticker whose download failed or found nothing."""
    columns = pd.MultiIndex.from_product([list(YAHOO_PRICE_COLUMNS), [ticker]], names=["Price", "Ticker"])
    return pd.DataFrame(index=pd.DatetimeIndex([], name="Date"), columns=columns, dtype=np.float64)


def with_padding_row(frame: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """`frame` with an all-NaN row inserted at `at` (as Yahoo pads a missing bar)."""
    pad = pd.DataFrame(np.nan, index=pd.DatetimeIndex([at], name=frame.index.name), columns=frame.columns)
    return pd.concat([frame, pad]).sort_index()


@dataclass
class FakeDownload:
    """Stand-in for `yfinance.download` serving a window of real bars, with scripted failures first.

    `script` items are consumed one per call: an exception is raised, `EMPTY` returns an empty frame.
    `revisions` override bar values (by UTC open time) in what is served, like Yahoo revising a bar.
    """

    source: pd.DataFrame
    ticker: str
    interval: Interval
    multi_level: bool = True
    script: list[BaseException | str] = field(default_factory=list)
    revisions: dict[pd.Timestamp, dict[str, float]] = field(default_factory=dict)
    pad_at: list[pd.Timestamp] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, **kwargs: Any) -> pd.DataFrame:
        self.calls.append(kwargs)
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, BaseException):
                raise item
            if item == EMPTY:
                return yahoo_empty_frame(self.ticker)
        window = self.window(kwargs["start"], kwargs["end"])
        if self.revisions:
            window.update(pd.DataFrame.from_dict(self.revisions, orient="index"))
        frame = yahoo_frame(window, self.ticker, self.interval, multi_level=self.multi_level)
        for ts in self.pad_at:
            frame = with_padding_row(frame, ts)
        return frame

    def window(self, start: datetime, end: datetime) -> pd.DataFrame:
        """Bars Yahoo would answer for [start, end): by open time, or by local date for daily bars."""
        index = pd.DatetimeIndex(self.source.index)
        if self.interval.is_intraday:
            mask = (index >= pd.Timestamp(start)) & (index < pd.Timestamp(end))
        else:
            zone = EXCHANGE_TZ[self.ticker]
            first = pd.Timestamp(start).tz_convert(zone).date()
            last = pd.Timestamp(end).tz_convert(zone).date()
            dates = index.tz_localize(None).date
            mask = (dates >= first) & (dates <= last)
        return self.source.loc[mask].copy()

    @property
    def starts(self) -> list[datetime]:
        return [call["start"] for call in self.calls]


def sleeps_recorder() -> tuple[list[float], Any]:
    """A list and a `sleep` function that appends to it instead of sleeping."""
    slept: list[float] = []
    return slept, slept.append
