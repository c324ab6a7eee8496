"""Market-data providers behind the `BarProvider` port, and the factory that picks one from configuration.

`TRADEBOT_DATA_SOURCE` is either `yfinance` (live Yahoo Finance data, cached on disk) or `csv:DIR` (files
`DIR/{symbol}_{interval}.csv` in the shared format, for replays and tests).
"""

from __future__ import annotations

from pathlib import Path

from data.csv_provider import CsvProvider
from data.yfinance_provider import YFinanceProvider
from engine.ports import BarProvider

__all__ = ["CsvProvider", "YFinanceProvider", "provider_from_source"]

_CSV_PREFIX = "csv:"
_YFINANCE = "yfinance"


def provider_from_source(source: str, cache_dir: Path) -> BarProvider:
    """Build the provider named by `source` ('yfinance' or 'csv:DIR'); `cache_dir` holds Yahoo's bar cache."""
    text = source.strip()
    if text == _YFINANCE:
        return YFinanceProvider(cache_dir)
    if text.startswith(_CSV_PREFIX) and text[len(_CSV_PREFIX) :].strip():
        directory = Path(text[len(_CSV_PREFIX) :].strip()).expanduser()
        if not directory.is_dir():
            raise ValueError(f"TRADEBOT_DATA_SOURCE names the folder {str(directory)!r}, which does not exist")
        return CsvProvider(directory)
    raise ValueError(f"TRADEBOT_DATA_SOURCE must be 'yfinance' or 'csv:DIR', was {source!r}")
