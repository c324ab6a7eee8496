"""Market-data providers behind the `BarProvider` port, and the factory that picks one from configuration.

`TRADEBOT_DATA_SOURCE` is either `yfinance` (live Yahoo Finance data, cached on disk) or `csv:DIR` (files
`DIR/{symbol}_{interval}.csv` in the shared format, for replays and tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from data.market.csv_provider import BarFileReader, CsvProvider
from data.market.sources import SourceKind, parse_source
from data.market.yfinance_provider import YFinanceProvider
from engine.ports import BarProvider

__all__ = ["CsvProvider", "YFinanceProvider", "provider_from_source"]

SHARED_CSV_BYTES: Final = 512 * 1024 * 1024  # the default watchlist's files parse to ~17 MB
# The CSV files are parsed once per process, whichever provider reads them (the bot's, a validation's per
# instrument, the sandbox's after a restart), up to SHARED_CSV_BYTES of parsed frames.
SHARED_CSV_FILES: Final = BarFileReader(SHARED_CSV_BYTES)


def provider_from_source(source: str, cache_dir: Path) -> BarProvider:
    """Build the provider named by `source` ('yfinance' or 'csv:DIR'); `cache_dir` holds Yahoo's bar cache."""
    try:
        parsed = parse_source(source)
    except ValueError as exc:
        raise ValueError(f"TRADEBOT_DATA_SOURCE {exc}") from None
    if parsed.kind is SourceKind.CSV and parsed.directory is not None:
        return CsvProvider(parsed.directory, SHARED_CSV_FILES)
    return YFinanceProvider(cache_dir)
