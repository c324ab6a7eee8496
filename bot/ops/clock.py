"""Clock adapters: the wall clock, and the bot clock that can replay the past at any speed.

Everything in the bot follows one `BotClock`: the as-of of data, schedules, staleness, expiry, paper fills
and position monitoring. With `TRADEBOT_CLOCK_START` it starts at that instant and runs
`TRADEBOT_CLOCK_SPEED` times faster than real time, so a trader can paper-trade last week in minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from engine.domain import ensure_utc


class WallClock:
    """The real time, UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class BotClock:
    """Bot time: real time, or a simulated clock started at `start` and running `speed` times faster."""

    def __init__(
        self,
        start: datetime | None = None,
        speed: float = 1.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed must be positive, was {speed}")
        self.speed = speed
        self.simulated = start is not None or speed != 1.0
        self._monotonic = monotonic
        self._real_origin = monotonic()
        self._bot_origin = ensure_utc(start, "clock start") if start is not None else datetime.now(UTC)

    def now(self) -> datetime:
        if not self.simulated:
            return datetime.now(UTC)
        elapsed = (self._monotonic() - self._real_origin) * self.speed
        return self._bot_origin + timedelta(seconds=elapsed)

    def real_seconds(self, bot_delta: timedelta) -> float:
        """Real seconds that pass while the bot clock advances by `bot_delta` (never negative)."""
        return max(bot_delta.total_seconds(), 0.0) / self.speed

    def real_seconds_until(self, when: datetime) -> float:
        """Real seconds until the bot clock reaches `when` (0 if it already has)."""
        return self.real_seconds(when - self.now())
