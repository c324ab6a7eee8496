"""Market-data providers behind the `BarProvider` port, and the factory that picks one from configuration.

`TRADEBOT_DATA_SOURCE` is either `yfinance` (live Yahoo Finance data, cached on disk) or `csv:DIR` (files
`DIR/{symbol}_{interval}.csv` in the shared format, for replays and tests).

The providers bring pandas (about 0.3 s to import): the factory checks the source at once and builds its provider
on the first fetch, so a command that wires the bot's services but reads no bars (`tradebot report`) never loads it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from data.market.sources import SourceKind, parse_source
from engine.domain import Instrument

if TYPE_CHECKING:
    import pandas as pd

    from engine.ports import BarProvider

__all__ = ["DeferredProvider", "provider_from_source"]


class DeferredProvider:
    """A `BarProvider` that builds the real one on its first fetch (from any thread, once)."""

    def __init__(self, name: str, build: Callable[[], BarProvider]) -> None:
        self.name = name
        self._build = build
        self._provider: BarProvider | None = None
        self._lock = threading.Lock()

    def fetch(self, instrument: Instrument, end: datetime, bars: int) -> pd.DataFrame:
        """The built provider's `fetch`."""
        return self.built().fetch(instrument, end, bars)

    def built(self) -> BarProvider:
        """The real provider, built now if it was not yet."""
        provider = self._provider
        if provider is None:
            with self._lock:
                if self._provider is None:
                    self._provider = self._build()
                provider = self._provider
        return provider


def provider_from_source(source: str, cache_dir: Path) -> DeferredProvider:
    """The provider named by `source` ('yfinance' or 'csv:DIR'), built on first use; `cache_dir` holds Yahoo's bar
    cache. A malformed source raises ValueError here."""
    try:
        parsed = parse_source(source)
    except ValueError as exc:
        raise ValueError(f"TRADEBOT_DATA_SOURCE {exc}") from None
    directory = parsed.directory
    if parsed.kind is SourceKind.CSV and directory is not None:
        return DeferredProvider(f"csv:{directory}", lambda: _csv(directory))
    return DeferredProvider("yfinance", lambda: _yahoo(cache_dir))


def _csv(directory: Path) -> BarProvider:
    from data.market.csv_provider import CsvProvider  # noqa: PLC0415 - pandas: only where bars are read

    return CsvProvider(directory)


def _yahoo(cache_dir: Path) -> BarProvider:
    from data.market.yfinance_provider import YFinanceProvider  # noqa: PLC0415 - pandas: only where bars are read

    return YFinanceProvider(cache_dir)
