"""The trading day the daily protections count in: it rolls over at 17:00 New York, daylight saving included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.services.book import trading_day


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        ("2026-03-06T15:00Z", "2026-03-05T22:00Z", "2026-03-06T22:00Z"),  # EST all day
        ("2026-03-08T20:30Z", "2026-03-07T22:00Z", "2026-03-08T21:00Z"),  # the day DST starts: 23 hours
        ("2026-03-08T21:00Z", "2026-03-08T21:00Z", "2026-03-09T21:00Z"),  # exactly at the rollover
        ("2026-11-01T12:00Z", "2026-10-31T21:00Z", "2026-11-01T22:00Z"),  # the day DST ends: 25 hours
    ],
)
def test_trading_day_rolls_over_at_17_new_york(now: str, start: str, end: str) -> None:
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).astimezone(UTC)

    assert trading_day(at(now), "America/New_York", 17) == (at(start), at(end))
