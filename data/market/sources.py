"""Where bars come from, as configured: `yfinance`, or `csv:DIR` for files `DIR/{symbol}_{interval}.csv`.

Parsed once, at the configuration boundary, so a mistyped source is a configuration error (exit 2 from the CLI)
rather than a failure in the middle of a command.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

CSV_PREFIX: Final = "csv:"


class SourceKind(StrEnum):
    YFINANCE = "yfinance"
    CSV = "csv"


@dataclass(frozen=True)
class DataSource:
    kind: SourceKind
    directory: Path | None = None  # the CSV folder


def parse_source(source: str) -> DataSource:
    """The source `source` names; ValueError saying what is wrong (an unknown kind, a folder that is not there)."""
    text = source.strip()
    if text == SourceKind.YFINANCE.value:
        return DataSource(SourceKind.YFINANCE)
    if text.startswith(CSV_PREFIX) and text[len(CSV_PREFIX) :].strip():
        directory = Path(text[len(CSV_PREFIX) :].strip()).expanduser()
        if not directory.is_dir():
            raise ValueError(f"names the folder {str(directory)!r}, which does not exist")
        return DataSource(SourceKind.CSV, directory)
    raise ValueError(f"must be 'yfinance' or 'csv:DIR', was {source!r}")
