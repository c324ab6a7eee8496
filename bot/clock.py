"""Clock adapters: the wall clock; the engine's FixedClock serves `--as-of` and replays."""

from __future__ import annotations

from datetime import UTC, datetime


class WallClock:
    """The real time, UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)
