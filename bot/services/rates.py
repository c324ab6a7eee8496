"""Conversion prices into the account currency, for sizing orders and adding up P&L across currencies.

An instrument quoted in another currency than the account's needs a linking pair's price: USDINR for
RELIANCE in a USD account, GBPUSD for EURGBP. (USDJPY in a USD account converts at its own price and needs
none.) Each needed pair is priced, in this order, from:

1. the latest close of that pair (or its inverse) in the bars a scan just loaded, when it is on the watchlist;
2. the market-data feed (the same provider as the bars: Yahoo `USDINR=X`; a CSV folder's `USDINR_1h.csv`),
   fetched at most once per `refresh_after` per pair, failures included;
3. the price configured in `[bot.fx_rates]`, which is used as written and named as configured wherever shown.

A pair with none of these is missing: signals that need it are not sized (dropped with the pair's name).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from data.market.validation import validate_bars
from engine.bars import Bars
from engine.calendars import get_calendar
from engine.domain import AssetClass, Instrument, Interval
from engine.ports import BarProvider, ProviderError
from engine.sizing import RateHistory, conversion_pair

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_REFRESH = timedelta(hours=1)
_FEED_BARS = 100  # validated as analysis does: one corrupt bar in 100 is dropped
_NEVER = 10**9
_RATE_TICK = Decimal("0.000001")


class RateSource(StrEnum):
    WATCHLIST = "watchlist"
    FEED = "feed"
    CONFIGURED = "configured"


@dataclass(frozen=True, slots=True)
class Rate:
    """The price of one pair (`symbol` as quoted, e.g. USDINR), where it came from and as of when."""

    symbol: str
    price: Decimal
    source: RateSource
    as_of: datetime | None

    def __post_init__(self) -> None:
        if not self.price.is_finite() or self.price <= 0:
            raise ValueError(f"rate {self.symbol} must be a positive price, was {self.price}")

    def describe(self) -> str:
        when = f" at {self.as_of:%Y-%m-%d %H:%MZ}" if self.as_of is not None else ""
        return f"{self.symbol} {self.price.normalize()} ({self.source.value}{when})"


def needed_pairs(
    instruments: Collection[Instrument], account_currency: str, quotes: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """Pair needed to convert each instrument's money into the account's, by symbol (only those needing one)."""
    out = {}
    for instrument in instruments:
        pair = conversion_pair(instrument, account_currency, (quotes or {}).get(instrument.symbol))
        if pair is not None:
            out[instrument.symbol] = pair
    return out


def _inverse(pair: str) -> str:
    return pair[3:] + pair[:3]


def _fx_instrument(symbol: str) -> Instrument:
    """A pair to ask the feed for: Yahoo's ticker convention, hourly bars, the FX calendar."""
    return Instrument(
        symbol,
        f"{symbol}=X",
        AssetClass.FX,
        Interval.H1,
        tick_size=_RATE_TICK,
        pip_size=Decimal("0.0001"),
        lot_size=Decimal("0.01"),
        contract_size=Decimal("100000"),
        calendar="FX",
        timezone="America/New_York",
    )


def clean_rates(frame: pd.DataFrame, symbol: str, now: datetime) -> tuple[Bars | None, str]:
    """A linking pair's bars after the analysis' bar validation (corrupt bars dropped, a mostly corrupt feed
    refused), and why none when refused. Staleness is not judged: a conversion price moves little in a day."""
    instrument = _fx_instrument(symbol)
    check = validate_bars(frame, instrument, get_calendar(instrument.calendar), now, min_bars=1, stale_bars=_NEVER)
    return check.bars, check.rejection or ""


class RateBook:
    """The conversion prices the desk needs, refreshed from the run's bars, the feed, then the configuration."""

    def __init__(
        self,
        needs: Mapping[str, str],
        provider: BarProvider | None,
        configured: Mapping[str, Decimal] | None = None,
        refresh_after: timedelta = DEFAULT_REFRESH,
    ) -> None:
        self.needs = dict(needs)  # symbol -> the pair converting its money (`needed_pairs`)
        self.pairs = frozenset(needs.values())
        self.provider = provider
        self.refresh_after = refresh_after
        self._rates: dict[str, Rate] = {}
        self._tried: dict[str, datetime] = {}
        for symbol, price in (configured or {}).items():
            pair = symbol if symbol in self.pairs else _inverse(symbol)
            self._rates[pair] = Rate(symbol, price, RateSource.CONFIGURED, None)

    def rate(self, pair: str) -> Rate | None:
        """The best known price of `pair` (or of its inverse, as quoted), or None."""
        return self._rates.get(pair)

    def prices(self) -> dict[str, Decimal]:
        """Known prices by the symbol they are quoted as (USDINR or INRUSD), for `engine.sizing.quote_to_account`."""
        return {r.symbol: r.price for r in self._rates.values()}

    def missing(self) -> list[str]:
        return sorted(p for p in self.pairs if p not in self._rates)

    def update_from_bars(self, bars: Mapping[str, Bars]) -> None:
        """Take each needed pair's latest close from the run's bars when the watchlist has it (either way round)."""
        for pair in self.pairs:
            for symbol in (pair, _inverse(pair)):
                found = bars.get(symbol)
                if found is not None and len(found):
                    price = Decimal(repr(float(found.close[-1])))
                    self._rates[pair] = Rate(symbol, price, RateSource.WATCHLIST, found.bar_time(len(found) - 1))
                    break

    async def refresh(self, now: datetime) -> None:
        """Ask the feed for needed pairs not priced by the watchlist, at most once per `refresh_after` each."""
        if self.provider is None:
            return
        for pair in sorted(self.pairs):
            known = self._rates.get(pair)
            if known is not None and known.source is RateSource.WATCHLIST:
                continue
            tried = self._tried.get(pair)
            if tried is not None and now - tried < self.refresh_after:
                continue
            self._tried[pair] = now
            rate = await self._fetch(pair, now)
            if rate is not None:
                self._rates[pair] = rate

    async def _fetch(self, pair: str, now: datetime) -> Rate | None:
        assert self.provider is not None
        errors = []
        for symbol in (pair, _inverse(pair)):
            try:
                frame = await asyncio.to_thread(self.provider.fetch, _fx_instrument(symbol), now, _FEED_BARS)
            except ProviderError as exc:
                errors.append(str(exc))
                continue
            bars, why = clean_rates(frame, symbol, now)
            if bars is not None:
                price = Decimal(repr(float(bars.close[-1])))
                return Rate(symbol, price, RateSource.FEED, bars.bar_time(len(bars) - 1))
            errors.append(f"{symbol}: {why}")
        configured = self._rates.get(pair)
        fallback = f"; using {configured.describe()}" if configured is not None else ""
        log.warning("no conversion price for %s from the feed (%s)%s", pair, "; ".join(errors), fallback)
        return None


def rate_history(
    provider: BarProvider | None,
    pairs: Collection[str],
    configured: Mapping[str, Decimal],
    end: datetime,
    bars: int,
) -> RateHistory:
    """Conversion prices over a backtest's time: each needed pair's bars from the feed (either way round), over
    the configured prices. A pair the feed does not have is priced by the configuration alone, as the desk does.
    """
    series: dict[str, Bars] = {}
    for pair in sorted(set(pairs)):
        for symbol in (pair, _inverse(pair)):
            if provider is None:
                break
            try:
                frame = provider.fetch(_fx_instrument(symbol), end, bars)
            except ProviderError as exc:
                log.info("no %s bars for backtest conversions (%s)", symbol, exc)
                continue
            clean, why = clean_rates(frame, symbol, end)
            if clean is not None:
                series[symbol] = clean
                break
            log.info("no usable %s bars for backtest conversions (%s)", symbol, why)
    return RateHistory(fixed=dict(configured), series=series)
