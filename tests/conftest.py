"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import require_market_dir


@pytest.fixture(scope="session")
def market_dir() -> Path:
    """The shared market-data folder; tests using it skip with a reason when it is absent."""
    return require_market_dir()
