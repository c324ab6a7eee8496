"""Economic-calendar feeds for the news embargo: local CSV/JSON files and ForexFactory's weekly JSON.

Formats:
  * local CSV with the header `datetime_utc,currency,impact,title`, or a JSON list of objects with those keys;
    `datetime_utc` is ISO 8601 (no offset = UTC; an explicit offset is converted), impact is
    low/medium/high/holiday (any case); a row with another impact is malformed.
  * ForexFactory's weekly JSON (`FOREXFACTORY_URL`): a list of `{"title", "country", "date", "impact",
    "forecast", "previous"}`; `date` is New York local time carrying its own UTC offset (DST already applied,
    "-05:00" in winter, "-04:00" in summer) and is converted to UTC with that offset; impact High/Medium/Low/
    Holiday maps to the same Impact, anything else ("Non-Economic") to LOW; country "All" becomes `ALL`.

Malformed rows are skipped and counted in one warning per parse; a file that is not the format at all, or in
which no row parses, is a `NewsFeedError` naming the file or URL and what was wrong.

`NewsSource` turns a configured source string into a calendar. ForexFactory is fetched at most once per UTC
day: the raw JSON is cached as `forexfactory_<url hash>_<YYYY-MM-DD>.json` (the fetch date) and a cache file of
today is reused. When the fetch fails (network, HTTP status, bad JSON) the newest cache younger than
`CACHE_MAX_AGE` is used and the status says so; with none, the calendar is None and the status says which
fallback applies. A failed fetch is retried no sooner than `retry_after` later. Nothing here raises on a network
failure.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from engine.domain import ensure_utc
from engine.news import ALL_CURRENCIES, FeedFallback, Impact, NewsCalendar, NewsEvent

FOREXFACTORY_URL: Final = "https://nfs.faireconomy.media/ff_calendar_thisweek.json"
FETCH_TIMEOUT_SECONDS: Final = 10.0
CACHE_MAX_AGE: Final = timedelta(days=7)
RETRY_AFTER: Final = timedelta(hours=1)
CSV_COLUMNS: Final = ("datetime_utc", "currency", "impact", "title")
SOURCE_FORMS: Final = "'file:PATH' (.csv or .json), 'forexfactory' or 'forexfactory:URL', or 'none'"
_USER_AGENT: Final = "tradebot/0.1 (+news embargo; fetched once a day)"
_FF_IMPACTS: Final[dict[str, Impact]] = {
    "high": Impact.HIGH,
    "medium": Impact.MEDIUM,
    "low": Impact.LOW,
    "holiday": Impact.HOLIDAY,
}
_CACHE_NAME_RE: Final = re.compile(r"^forexfactory_(?P<key>[0-9a-f]{12})_(?P<day>\d{4}-\d{2}-\d{2})\.json$")

log = logging.getLogger(__name__)


class NewsFeedError(Exception):
    """A news file or feed answer that cannot be read as a calendar at all."""


# --------------------------------------------------------------------------------------------------- parsing


class _RowError(ValueError):
    """One malformed row (skipped and counted)."""


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _RowError(f"{key} missing or empty")
    return value.strip()


def _currency(value: str) -> str:
    code = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise _RowError(f"currency {value!r} is not a 3-letter code")
    return code


def _iso_time(value: str, *, naive_is_utc: bool) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise _RowError(f"time {value!r} is not ISO 8601") from None
    if ts.tzinfo is None:
        if not naive_is_utc:
            raise _RowError(f"time {value!r} has no UTC offset")
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def _local_row(row: Mapping[str, Any]) -> NewsEvent:
    impact_text = _text(row, "impact").lower()
    try:
        impact = Impact(impact_text)
    except ValueError:
        raise _RowError(f"impact {impact_text!r} is not one of {', '.join(i.value for i in Impact)}") from None
    return NewsEvent(
        at=_iso_time(_text(row, "datetime_utc"), naive_is_utc=True),
        currency=_currency(_text(row, "currency")),
        impact=impact,
        title=_text(row, "title"),
    )


def _forexfactory_row(row: Mapping[str, Any]) -> NewsEvent:
    impact_value = row.get("impact")
    impact = _FF_IMPACTS.get(impact_value.strip().lower(), Impact.LOW) if isinstance(impact_value, str) else Impact.LOW
    country = _text(row, "country")
    currency = ALL_CURRENCIES if country.upper() == ALL_CURRENCIES else _currency(country)
    return NewsEvent(
        at=_iso_time(_text(row, "date"), naive_is_utc=False),
        currency=currency,
        impact=impact,
        title=_text(row, "title"),
    )


RowParser = Callable[[Mapping[str, Any]], NewsEvent]


def _collect(rows: Iterable[Any], parse_row: RowParser, origin: str) -> tuple[NewsEvent, ...]:
    """Parse every row, skipping malformed ones with one counted warning; no row parsed at all is an error."""
    events: list[NewsEvent] = []
    skipped = 0
    first_problem = ""
    for number, row in enumerate(rows, start=1):
        try:
            if not isinstance(row, Mapping):
                raise _RowError(f"expected an object, got {type(row).__name__}")
            events.append(parse_row(row))
        except ValueError as exc:  # _RowError, or a NewsEvent invariant
            skipped += 1
            if not first_problem:
                first_problem = f"row {number}: {exc}"
    if skipped and not events:
        raise NewsFeedError(f"{origin}: no usable news rows ({skipped} malformed; first: {first_problem})")
    if skipped:
        log.warning("%s: skipped %d malformed news row(s); first: %s", origin, skipped, first_problem)
    return tuple(events)


def _json_list(text: str, origin: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NewsFeedError(f"{origin}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise NewsFeedError(f"{origin}: expected a JSON list of events, got a {type(data).__name__}")
    return data


def parse_forexfactory_json(text: str, origin: str = "forexfactory") -> tuple[NewsEvent, ...]:
    """Parse ForexFactory's weekly calendar JSON into UTC events (raises NewsFeedError naming `origin`)."""
    return _collect(_json_list(text, origin), _forexfactory_row, origin)


def parse_news_json(text: str, origin: str = "news json") -> tuple[NewsEvent, ...]:
    """Parse a local JSON list of {datetime_utc, currency, impact, title} objects."""
    return _collect(_json_list(text, origin), _local_row, origin)


def parse_news_csv(text: str, origin: str = "news csv") -> tuple[NewsEvent, ...]:
    """Parse a local CSV with the header datetime_utc,currency,impact,title."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip().lower() for name in reader.fieldnames or ()]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise NewsFeedError(f"{origin}: CSV header must have {','.join(CSV_COLUMNS)}; missing {', '.join(missing)}")
    reader.fieldnames = header
    return _collect(reader, _local_row, origin)


def load_news_file(path: Path) -> tuple[NewsEvent, ...]:
    """Read a local .csv or .json news file (raises NewsFeedError naming the file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NewsFeedError(f"{path}: cannot read news file ({exc})") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return parse_news_csv(text, str(path))
    if suffix == ".json":
        return parse_news_json(text, str(path))
    raise NewsFeedError(f"{path}: news file must end in .csv or .json")


# --------------------------------------------------------------------------------------------------- source


@dataclass(frozen=True, slots=True)
class NewsCalendarResult:
    """A calendar (None when unknown: the caller applies its fallback) and a one-line status for the trader."""

    calendar: NewsCalendar | None
    status: str


def _summary(calendar: NewsCalendar) -> str:
    if not calendar.events:
        return "0 events"
    last = calendar.events[-1].at.strftime("%Y-%m-%d %H:%M")
    return f"{len(calendar)} events up to {last} UTC"


class NewsSource:
    """The configured news calendar source: `file:PATH`, `forexfactory[:URL]` or `none`."""

    def __init__(
        self,
        source: str,
        cache_dir: Path | None = None,
        fallback: FeedFallback = FeedFallback.ALLOW,
        timeout_seconds: float = FETCH_TIMEOUT_SECONDS,
        retry_after: timedelta = RETRY_AFTER,
    ) -> None:
        kind, _, rest = source.strip().partition(":")
        kind = kind.lower()
        self.kind = kind
        self.path: Path | None = None
        self.url: str | None = None
        if kind == "file" and rest.strip():
            self.path = Path(rest.strip()).expanduser()
            if self.path.suffix.lower() not in (".csv", ".json"):
                raise ValueError(f"news source file must end in .csv or .json, was {self.path}")
        elif kind == "forexfactory":
            self.url = rest.strip() or FOREXFACTORY_URL
        elif kind != "none" or rest:
            raise ValueError(f"news source must be {SOURCE_FORMS}, was {source!r}")
        self.cache_dir = cache_dir
        self.fallback = fallback
        self.timeout_seconds = timeout_seconds
        self.retry_after = retry_after
        self._memo: tuple[object, NewsCalendarResult] | None = None  # (validity key, result)

    def __repr__(self) -> str:
        return f"NewsSource({self.kind}, {self.path or self.url or '-'})"

    def _unavailable(self, why: str) -> NewsCalendarResult:
        return NewsCalendarResult(None, f"news calendar unavailable: {why}; applying fallback {self.fallback}")

    async def calendar(self, now: datetime) -> NewsCalendarResult:
        """Return the calendar to use at `now` and a status line; never raises on a feed or network failure."""
        ensure_utc(now, "now")
        if self.kind == "none":
            return NewsCalendarResult(NewsCalendar(()), "news embargo off (news source 'none')")
        if self.path is not None:
            return self._from_file(self.path)
        return await self._from_forexfactory(now)

    # ----------------------------------------------------------------------------------------------- file

    def _from_file(self, path: Path) -> NewsCalendarResult:
        try:
            stat = path.stat()
        except OSError as exc:
            return self._unavailable(f"cannot read {path} ({exc.strerror or exc})")
        key = ("file", stat.st_mtime_ns, stat.st_size)
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        try:
            calendar = NewsCalendar.from_events(load_news_file(path))
        except NewsFeedError as exc:
            result = self._unavailable(str(exc))
        else:
            result = NewsCalendarResult(calendar, f"news calendar: {_summary(calendar)} from {path}")
        self._memo = (key, result)
        return result

    # --------------------------------------------------------------------------------------- forexfactory

    @property
    def _cache_key(self) -> str:
        return hashlib.sha256((self.url or "").encode()).hexdigest()[:12]

    def cache_path(self, day: date) -> Path | None:
        """Return the cache file of the fetch made on UTC `day` (None without a cache directory)."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"forexfactory_{self._cache_key}_{day.isoformat()}.json"

    async def _from_forexfactory(self, now: datetime) -> NewsCalendarResult:
        today = now.date()
        if self._memo is not None:
            key = self._memo[0]
            if key == ("ok", today):
                return self._memo[1]
            if isinstance(key, tuple) and key[0] == "failed" and now < key[1]:
                return self._memo[1]
        cached = self._read_cache(today)
        if cached is not None:
            result = NewsCalendarResult(cached, f"news calendar: {_summary(cached)} (ForexFactory, fetched today)")
            self._memo = (("ok", today), result)
            return result
        try:
            text = await self._fetch()
            calendar = NewsCalendar.from_events(parse_forexfactory_json(text, self.url or "forexfactory"))
        except NewsFeedError as exc:
            why = str(exc)
        else:
            self._write_cache(today, text)
            result = NewsCalendarResult(calendar, f"news calendar: {_summary(calendar)} (ForexFactory, fetched now)")
            self._memo = (("ok", today), result)
            return result
        log.warning("news feed fetch failed: %s", why)
        result = self._stale_or_unavailable(now, why)
        self._memo = (("failed", now + self.retry_after), result)
        return result

    async def _fetch(self) -> str:
        """GET the feed; any network or HTTP failure becomes a NewsFeedError naming the URL."""
        import httpx  # noqa: PLC0415 - only a fetch needs it; reading the settings does not

        from data.http import tls_context  # noqa: PLC0415 - imports httpx

        url = self.url or FOREXFACTORY_URL
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout_seconds,
                follow_redirects=True,
                headers={"User-Agent": _USER_AGENT},
                verify=tls_context(),
            ) as client:
                response = await client.get(url)
        except httpx.TimeoutException:
            raise NewsFeedError(f"{url}: no answer within {self.timeout_seconds:g} s") from None
        except httpx.HTTPError as exc:
            raise NewsFeedError(f"{url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != httpx.codes.OK:
            raise NewsFeedError(f"{url}: HTTP {response.status_code} {response.reason_phrase}".rstrip())
        try:
            return response.text
        except (UnicodeDecodeError, LookupError) as exc:
            raise NewsFeedError(f"{url}: undecodable answer ({exc})") from None

    def _read_cache(self, day: date) -> NewsCalendar | None:
        """Return the parsed cache of `day`, or None; an unparseable cache file is moved aside to `*.corrupt`."""
        path = self.cache_path(day)
        if path is None or not path.exists():
            return None
        try:
            return NewsCalendar.from_events(parse_forexfactory_json(path.read_text(encoding="utf-8"), str(path)))
        except (OSError, UnicodeDecodeError, NewsFeedError) as exc:
            log.warning("news cache %s is unreadable (%s); moving it aside", path, exc)
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(path.name + ".corrupt"))
            return None

    def _write_cache(self, day: date, text: str) -> None:
        path = self.cache_path(day)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write news cache %s: %s", path, exc)

    def _cached_days(self) -> list[date]:
        """Return the fetch dates of this URL's cache files, newest first."""
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return []
        days: list[date] = []
        for entry in self.cache_dir.iterdir():
            match = _CACHE_NAME_RE.match(entry.name)
            if match and match["key"] == self._cache_key:
                days.append(date.fromisoformat(match["day"]))
        return sorted(days, reverse=True)

    def _stale_or_unavailable(self, now: datetime, why: str) -> NewsCalendarResult:
        for day in self._cached_days():
            age = now - datetime(day.year, day.month, day.day, tzinfo=UTC)
            if age >= CACHE_MAX_AGE or age < timedelta(0):
                continue
            calendar = self._read_cache(day)
            if calendar is None:
                continue
            return NewsCalendarResult(
                calendar,
                f"news calendar: fetch failed ({why}); using the cache of {day.isoformat()} "
                f"({_summary(calendar)}; later news unknown)",
            )
        return self._unavailable(why)
