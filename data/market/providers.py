"""Market-data providers behind the `BarProvider` port, and the factory that picks one from configuration.

`TRADEBOT_DATA_SOURCE` is either `yfinance` (live Yahoo Finance data, cached on disk) or `csv:DIR` (files
`DIR/{symbol}_{interval}.csv` in the shared format, for replays and tests).
"""

from __future__ import annotations

from pathlib import Path

from data.market.csv_provider import CsvProvider
from data.market.sources import SourceKind, parse_source
from data.market.yfinance_provider import YFinanceProvider
from engine.ports import BarProvider

__all__ = ["CsvProvider", "YFinanceProvider", "provider_from_source"]


def provider_from_source(source: str, cache_dir: Path) -> BarProvider:
    """Build the provider named by `source` ('yfinance' or 'csv:DIR'); `cache_dir` holds Yahoo's bar cache."""
    try:
        parsed = parse_source(source)
    except ValueError as exc:
        raise ValueError(f"TRADEBOT_DATA_SOURCE {exc}") from None
    if parsed.kind is SourceKind.CSV and parsed.directory is not None:
        return CsvProvider(parsed.directory)
    return YFinanceProvider(cache_dir)
