"""Ports: the small interfaces through which the core reaches time, market data and storage.

Adapters live in `data/` (market data, SQLite) and `bot/` (clocks, brokers); tests use fakes at these ports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pandas as pd

from engine.domain import Instrument, Rejection, RunStatus, ScoredSetup, SignalStatus


class Clock(Protocol):
    def now(self) -> datetime:
        """Current instant, timezone-aware UTC."""
        ...


@dataclass(frozen=True)
class FixedClock:
    """A clock stopped at one instant (replays, `--as-of`, tests)."""

    at: datetime

    def now(self) -> datetime:
        return self.at


class ProviderError(Exception):
    """Market data could not be obtained for one instrument; the message is shown to the trader."""


class BarProvider(Protocol):
    """Source of OHLCV bars for one instrument at its configured interval."""

    name: str

    def fetch(self, instrument: Instrument, end: datetime, bars: int) -> pd.DataFrame:
        """Return up to `bars` bars closed by `end`, oldest first.

        The frame is indexed by bar open time (tz-aware UTC DatetimeIndex named `timestamp`) with float
        columns open, high, low, close, volume. It is raw: validation happens after. Raises ProviderError.
        """
        ...


@dataclass(frozen=True)
class RunSummary:
    """What one analysis run did, as persisted."""

    run_id: int
    started_at: datetime
    finished_at: datetime | None
    as_of: datetime
    data_source: str
    symbols: tuple[str, ...]
    setups: int
    rejected_setups: int
    rejected_symbols: int
    errors: tuple[str, ...] = field(default_factory=tuple)
    status: RunStatus | None = None  # None only from stores that do not track it; SqliteStore always sets it


class SignalStore(Protocol):
    """Persistence of analysis runs, setups (signals) and rejections."""

    async def start_run(self, started_at: datetime, as_of: datetime, data_source: str, symbols: Sequence[str]) -> int:
        """Record the start of a run and return its id."""
        ...

    async def finish_run(
        self,
        run_id: int,
        finished_at: datetime,
        setups: Sequence[ScoredSetup],
        rejections: Sequence[Rejection],
        errors: Sequence[str],
    ) -> None:
        """Store the run's setups (status NEW, idempotent by signal id) and rejections, and close the run."""
        ...

    async def mark_run_failed(self, run_id: int, finished_at: datetime, error: str) -> None:
        """Close a run that crashed, keeping the error."""
        ...

    async def run(self, run_id: int) -> RunSummary | None: ...

    async def recent_runs(self, limit: int = 20) -> list[RunSummary]: ...

    async def setups_for_run(self, run_id: int) -> list[tuple[ScoredSetup, SignalStatus]]: ...

    async def rejections_for_run(self, run_id: int) -> list[Rejection]: ...
