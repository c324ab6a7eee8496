"""A clock tests move by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.domain import ensure_utc


class SteppingClock:
    """Stands still until the test advances it."""

    def __init__(self, start: datetime) -> None:
        self.at = ensure_utc(start, "start")

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> datetime:
        self.at += delta
        return self.at
