"""News embargo: no new entries around scheduled high-impact economic news for the currencies an instrument moves with.

Pure: events come in already parsed (see `data.market.news_feed`), times are UTC and passed in. An event at `T` blocks
entries on a matching instrument from `T - before` to `T + after`, both ends inclusive. A HOLIDAY item marks a
whole day (calendars list it at local midnight), so it blocks from `T - before` to `T + 1 day + after` when
HOLIDAY is one of the configured impacts. An event whose currency is `ALL` matches every instrument.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Final

from engine.domain import AssetClass, Instrument, ensure_utc


class Impact(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    HOLIDAY = "holiday"


class FeedFallback(StrEnum):
    """What to do while the news calendar is unknown (feed down, no usable cache)."""

    ALLOW = "allow"  # trade on, and say the calendar is unknown
    BLOCK = "block"  # block every entry until a calendar is known again


ALL_CURRENCIES: Final = "ALL"  # an event for every currency (ForexFactory's country "All")
DEFAULT_BEFORE: Final = timedelta(minutes=30)
DEFAULT_AFTER: Final = timedelta(minutes=30)
HOLIDAY_SPAN: Final = timedelta(days=1)
_MAX_SPAN: Final = HOLIDAY_SPAN
_CURRENCY_RE: Final = re.compile(r"^[A-Z]{3}$")
_USD_QUOTES: Final = ("FDUSD", "BUSD", "USDT", "USDC", "USD")  # longest first: BUSD before USD
_FIAT: Final = frozenset({"EUR", "GBP", "JPY", "AUD", "CAD", "CHF", "NZD", "CNY", "INR", "USD"})
CALENDAR_CURRENCIES: Final[dict[str, str]] = {"XNYS": "USD", "XNAS": "USD", "XNSE": "INR", "XBOM": "INR"}


@dataclass(frozen=True, slots=True)
class NewsEvent:
    """One scheduled release: when (UTC), for which currency, how much it moves markets, and its name."""

    at: datetime
    currency: str
    impact: Impact
    title: str

    def __post_init__(self) -> None:
        ensure_utc(self.at, "news event time")
        if not _CURRENCY_RE.match(self.currency):
            raise ValueError(f"news event currency must be a 3-letter upper-case code, was {self.currency!r}")
        if not isinstance(self.impact, Impact):
            raise ValueError(f"news event impact must be an Impact, was {self.impact!r}")
        if not self.title or not self.title.strip():
            raise ValueError("news event title must not be empty")

    @property
    def span(self) -> timedelta:
        """Return how long the event itself lasts: a whole day for a holiday, an instant otherwise."""
        return HOLIDAY_SPAN if self.impact is Impact.HOLIDAY else timedelta(0)

    def window(self, config: EmbargoConfig) -> tuple[datetime, datetime]:
        """Return the first and last instant (both inclusive) this event blocks entries under `config`."""
        return self.at - config.before, self.at + self.span + config.after


@dataclass(frozen=True, slots=True)
class EmbargoConfig:
    """How long before and after which kinds of news entries are blocked, and what to do without a calendar."""

    before: timedelta = DEFAULT_BEFORE
    after: timedelta = DEFAULT_AFTER
    impacts: frozenset[Impact] = frozenset({Impact.HIGH})
    fallback: FeedFallback = FeedFallback.ALLOW

    def __post_init__(self) -> None:
        if self.before < timedelta(0):
            raise ValueError(f"news embargo 'before' must not be negative, was {self.before}")
        if self.after < timedelta(0):
            raise ValueError(f"news embargo 'after' must not be negative, was {self.after}")
        if not self.impacts:
            raise ValueError("news embargo impacts must name at least one impact (use source 'none' to turn it off)")
        if not all(isinstance(i, Impact) for i in self.impacts):
            raise ValueError(f"news embargo impacts must be Impact values, were {sorted(map(str, self.impacts))}")
        if not isinstance(self.fallback, FeedFallback):
            raise ValueError(f"news embargo fallback must be a FeedFallback, was {self.fallback!r}")


@dataclass(frozen=True, slots=True)
class NewsBlock:
    """Entries are blocked now because of `event`, until `until` (inclusive), for the reason given."""

    event: NewsEvent
    until: datetime
    reason: str

    def __post_init__(self) -> None:
        ensure_utc(self.until, "news block end")
        if self.until < self.event.at:
            raise ValueError(f"news block must end at or after its event, ended {self.until} before {self.event.at}")


def currencies_of(instrument: Instrument) -> frozenset[str]:
    """Return the currencies whose news moves `instrument`.

    Mapping, by asset class:
      * FX: both legs of the six-letter symbol: EURUSD -> {EUR, USD}, USDJPY -> {USD, JPY};
      * METAL: the quote currency only (gold is moved by USD news, not "XAU" news): XAUUSD -> {USD};
      * CRYPTO: USD for a USD or USD-stablecoin quote (BTCUSD, BTCUSDT, ETHUSDC, *BUSD, *FDUSD); a major fiat
        quote maps to itself (BTCEUR -> {EUR}); a crypto/crypto pair (ETHBTC) has no macro currency: {};
      * EQUITY, ETF, INDEX: the currency of the exchange calendar: XNYS/XNAS -> {USD}, XNSE/XBOM -> {INR}.
    Separators in the symbol ("EUR/USD", "BTC-USDT") are ignored. Raises ValueError when no rule applies.
    """
    letters = re.sub(r"[^A-Z]", "", instrument.symbol.upper())
    asset = instrument.asset_class
    if asset is AssetClass.FX:
        if len(letters) != 6:
            raise ValueError(f"an FX symbol must be two 3-letter currencies, was {instrument.symbol!r}")
        return frozenset({letters[:3], letters[3:]})
    if asset is AssetClass.METAL:
        if len(letters) != 6:
            raise ValueError(f"a metal symbol must be metal + 3-letter quote currency, was {instrument.symbol!r}")
        return frozenset({letters[3:]})
    if asset is AssetClass.CRYPTO:
        for quote in _USD_QUOTES:
            if letters.endswith(quote) and len(letters) > len(quote):
                return frozenset({"USD"})
        if len(letters) > 3 and letters[-3:] in _FIAT:
            return frozenset({letters[-3:]})
        return frozenset()
    try:
        return frozenset({CALENDAR_CURRENCIES[instrument.calendar]})
    except KeyError:
        known = ", ".join(sorted(CALENDAR_CURRENCIES))
        raise ValueError(
            f"no news currency known for calendar {instrument.calendar!r} of {instrument.symbol}; known: {known}"
        ) from None


def _sort_key(event: NewsEvent) -> tuple[datetime, str, str, str]:
    return event.at, event.currency, event.title, event.impact.value


@dataclass(frozen=True, slots=True)
class NewsCalendar:
    """Events sorted by time (exact duplicates removed), for fast embargo lookups by bisection."""

    events: tuple[NewsEvent, ...]
    _times: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = [_sort_key(e) for e in self.events]
        if any(a >= b for a, b in pairwise(keys)):
            raise ValueError("news calendar events must be sorted by time and unique (build with from_events)")
        object.__setattr__(self, "_times", tuple(e.at for e in self.events))

    @classmethod
    def from_events(cls, events: Iterable[NewsEvent]) -> NewsCalendar:
        """Build a calendar from events in any order, dropping exact duplicates."""
        return cls(tuple(sorted(set(events), key=_sort_key)))

    def __len__(self) -> int:
        return len(self.events)

    def window(self, start: datetime, end: datetime) -> tuple[NewsEvent, ...]:
        """Return the events at or after `start` and before `end`, in time order."""
        ensure_utc(start, "news window start")
        ensure_utc(end, "news window end")
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_left(self._times, end)
        return self.events[lo:hi]

    def embargo(self, instrument: Instrument, at: datetime, config: EmbargoConfig) -> NewsBlock | None:
        """Return why entries on `instrument` are blocked at `at`, or None when no configured news is near.

        When several events block, the one nearest `at` is named, and `until` is the end of the whole
        unbroken blocked stretch (back-to-back windows of later events extend it).
        """
        ensure_utc(at, "embargo time")
        currencies = currencies_of(instrument)  # may be empty (ETHBTC): then only ALL events match

        def matches(event: NewsEvent) -> bool:
            return event.impact in config.impacts and (event.currency in currencies or event.currency == ALL_CURRENCIES)

        lo = bisect.bisect_left(self._times, at - config.after - _MAX_SPAN)
        hi = bisect.bisect_right(self._times, at + config.before)
        hits = [e for e in self.events[lo:hi] if matches(e) and at <= e.window(config)[1]]  # all start <= at
        if not hits:
            return None
        nearest = min(hits, key=lambda e: (abs(e.at - at), e.at))
        until = max(e.window(config)[1] for e in hits)
        for event in self.events[hi:]:  # windows start in time order: extend through back-to-back ones
            start, end = event.window(config)
            if start > until:
                break
            if matches(event):
                until = max(until, end)
        return NewsBlock(event=nearest, until=until, reason=_reason(nearest, at, until, config))


def embargo(
    events: Iterable[NewsEvent], instrument: Instrument, at: datetime, config: EmbargoConfig
) -> NewsBlock | None:
    """Return why entries on `instrument` are blocked at `at` by any of `events`, or None."""
    return NewsCalendar.from_events(events).embargo(instrument, at, config)


def _clock(ts: datetime, at: datetime) -> str:
    """Format `ts` as HH:MM, with its date in front when it is not the same UTC day as `at`."""
    return ts.strftime("%H:%M") if ts.date() == at.date() else ts.strftime("%Y-%m-%d %H:%M")


def _reason(event: NewsEvent, at: datetime, until: datetime, config: EmbargoConfig) -> str:
    start, end = event.window(config)
    text = (
        f"news embargo: {event.currency} {event.title} at {_clock(event.at, at)} UTC ({event.impact} impact), "
        f"entries blocked {_clock(start, at)}-{_clock(end, at)} UTC"
    )
    if until > end:
        text += f", and by later news until {_clock(until, at)} UTC"
    return text
