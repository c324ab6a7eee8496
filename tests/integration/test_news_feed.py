"""NewsSource against a local fake ForexFactory feed over real HTTP, and against local files (offline)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data.market.news_feed import FOREXFACTORY_URL, NewsSource
from engine.catalog import default_instrument
from engine.news import EmbargoConfig, FeedFallback, Impact
from tests.fakes.news_server import FakeNewsFeed

NOW = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
EURUSD = default_instrument("EURUSD")
FF_WEEK = json.dumps(
    [
        {
            "title": "Non-Farm Employment Change",
            "country": "USD",
            "date": "2026-03-06T08:30:00-05:00",
            "impact": "High",
            "forecast": "160K",
            "previous": "143K",
        },
        {
            "title": "Bank Holiday",
            "country": "JPY",
            "date": "2026-03-05T00:00:00-05:00",
            "impact": "Holiday",
            "forecast": "",
            "previous": "",
        },
        {
            "title": "ISM Services PMI",
            "country": "USD",
            "date": "2026-03-09T10:00:00-04:00",
            "impact": "Medium",
            "forecast": "",
            "previous": "",
        },
    ]
)


def cache_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def test_first_call_fetches_and_caches_second_same_day_does_not_hit_server(tmp_path: Path) -> None:
    async with FakeNewsFeed(FF_WEEK) as feed:
        source = NewsSource(f"forexfactory:{feed.url}", cache_dir=tmp_path / "news")
        first = await source.calendar(NOW)
        assert feed.requests == 1
        assert first.calendar is not None
        assert len(first.calendar) == 3
        assert "fetched now" in first.status
        [name] = cache_files(tmp_path / "news")
        assert name.endswith("_2026-03-06.json")
        block = first.calendar.embargo(EURUSD, datetime(2026, 3, 6, 13, 0, tzinfo=UTC), EmbargoConfig())
        assert block is not None
        assert "entries blocked 13:00-14:00 UTC" in block.reason

        second = await source.calendar(NOW + timedelta(hours=10))
        assert feed.requests == 1
        assert second.calendar == first.calendar

        # a restarted bot (new NewsSource) reuses today's cache file instead of fetching again
        restarted = NewsSource(f"forexfactory:{feed.url}", cache_dir=tmp_path / "news")
        third = await restarted.calendar(NOW + timedelta(hours=12))
        assert feed.requests == 1
        assert third.calendar == first.calendar
        assert "fetched today" in third.status

        # the next UTC day fetches again
        await restarted.calendar(NOW + timedelta(days=1))
        assert feed.requests == 2
        assert len(cache_files(tmp_path / "news")) == 2


async def test_503_falls_back_to_a_recent_cache_and_says_so(tmp_path: Path) -> None:
    async with FakeNewsFeed(FF_WEEK) as feed:
        await NewsSource(f"forexfactory:{feed.url}", cache_dir=tmp_path).calendar(NOW)
        feed.status = 503
        source = NewsSource(f"forexfactory:{feed.url}", cache_dir=tmp_path)
        later = NOW + timedelta(days=2)
        result = await source.calendar(later)
        assert feed.requests == 2
        assert result.calendar is not None
        assert len(result.calendar) == 3
        assert "fetch failed" in result.status
        assert "HTTP 503" in result.status
        assert "using the cache of 2026-03-06" in result.status

        # a failed fetch is not retried at once
        again = await source.calendar(later + timedelta(minutes=5))
        assert feed.requests == 2
        assert again == result
        await source.calendar(later + timedelta(hours=1, minutes=1))
        assert feed.requests == 3


async def test_503_ignores_a_cache_seven_days_old(tmp_path: Path) -> None:
    async with FakeNewsFeed(FF_WEEK) as feed:
        await NewsSource(f"forexfactory:{feed.url}", cache_dir=tmp_path).calendar(NOW)
        feed.status = 503
        source = NewsSource(f"forexfactory:{feed.url}", cache_dir=tmp_path, fallback=FeedFallback.BLOCK)
        result = await source.calendar(datetime(2026, 3, 13, 0, 0, tzinfo=UTC))
        assert result.calendar is None
        assert result.status.startswith("news calendar unavailable: ")
        assert result.status.endswith("; applying fallback block")


async def test_no_cache_and_503_gives_no_calendar_and_the_fallback_message(tmp_path: Path) -> None:
    async with FakeNewsFeed(FF_WEEK, status=503) as feed:
        source = NewsSource(f"forexfactory:{feed.url}", cache_dir=tmp_path, fallback=FeedFallback.ALLOW)
        result = await source.calendar(NOW)
        assert feed.requests == 1
        assert result.calendar is None
        assert result.status == (
            f"news calendar unavailable: {feed.url}: HTTP 503 Service Unavailable; applying fallback allow"
        )
        assert cache_files(tmp_path) == []


async def test_unreachable_server_never_raises(tmp_path: Path) -> None:
    feed = await FakeNewsFeed(FF_WEEK).start()
    url = feed.url
    await feed.stop()
    source = NewsSource(f"forexfactory:{url}", cache_dir=tmp_path, timeout_seconds=2)
    result = await source.calendar(NOW)
    assert result.calendar is None
    assert result.status.startswith(f"news calendar unavailable: {url}: ConnectError")


async def test_corrupt_json_is_an_error_message_not_an_exception(tmp_path: Path) -> None:
    async with FakeNewsFeed('[{"title": "NFP", "country": "USD", "date": ') as feed:
        source = NewsSource(f"forexfactory:{feed.url}", cache_dir=tmp_path)
        result = await source.calendar(NOW)
        assert result.calendar is None
        assert f"news calendar unavailable: {feed.url}: not valid JSON" in result.status
        assert cache_files(tmp_path) == []  # a corrupt answer is never cached


async def test_corrupt_cache_file_is_moved_aside_and_refetched(tmp_path: Path) -> None:
    async with FakeNewsFeed(FF_WEEK) as feed:
        source = NewsSource(f"forexfactory:{feed.url}", cache_dir=tmp_path)
        await source.calendar(NOW)
        [name] = cache_files(tmp_path)
        (tmp_path / name).write_text("{garbage")
        restarted = NewsSource(f"forexfactory:{feed.url}", cache_dir=tmp_path)
        result = await restarted.calendar(NOW)
        assert result.calendar is not None
        assert feed.requests == 2
        assert cache_files(tmp_path) == sorted([name, name + ".corrupt"])


async def test_csv_file_source(tmp_path: Path) -> None:
    path = tmp_path / "calendar.csv"
    path.write_text(
        "datetime_utc,currency,impact,title\n"
        "2026-03-06T13:30:00Z,USD,high,Non-Farm Employment Change\n"
        "2026-03-06T10:00:00Z,EUR,medium,ECB Speech\n"
        "oops,USD,high,Broken\n"
    )
    source = NewsSource(f"file:{path}")
    result = await source.calendar(NOW)
    assert result.calendar is not None
    assert [e.title for e in result.calendar.events] == ["ECB Speech", "Non-Farm Employment Change"]
    assert result.calendar.events[0].impact is Impact.MEDIUM
    assert str(path) in result.status
    assert result.calendar.embargo(EURUSD, datetime(2026, 3, 6, 14, 0, tzinfo=UTC), EmbargoConfig()) is not None


async def test_json_file_source_and_missing_or_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "calendar.json"
    path.write_text(
        json.dumps([{"datetime_utc": "2026-03-06T13:30:00Z", "currency": "USD", "impact": "High", "title": "NFP"}])
    )
    result = await NewsSource(f"file:{path}").calendar(NOW)
    assert result.calendar is not None
    assert len(result.calendar) == 1

    missing = await NewsSource(f"file:{tmp_path / 'absent.csv'}").calendar(NOW)
    assert missing.calendar is None
    assert "absent.csv" in missing.status
    assert missing.status.endswith("applying fallback allow")

    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    result = await NewsSource(f"file:{bad}", fallback=FeedFallback.BLOCK).calendar(NOW)
    assert result.calendar is None
    assert result.status == (
        f"news calendar unavailable: {bad}: not valid JSON (Expecting value: line 1 column 1 (char 0)); "
        "applying fallback block"
    )


async def test_source_strings() -> None:
    off = await NewsSource("none").calendar(NOW)
    assert off.calendar is not None
    assert len(off.calendar) == 0
    assert NewsSource("forexfactory").url == FOREXFACTORY_URL
    assert NewsSource("forexfactory:https://example.test/ff.json").url == "https://example.test/ff.json"
    for bad in ("", "rss:http://x", "file:", "file:calendar.txt", "none:x"):
        with pytest.raises(ValueError, match="news source"):
            NewsSource(bad)
