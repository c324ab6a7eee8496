"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.aws import isolate_aws
from tests.support import require_market_dir


@pytest.fixture(scope="session")
def market_dir() -> Path:
    """The shared market-data folder; tests using it skip with a reason when it is absent."""
    return require_market_dir()


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test (nor a bot process it starts) finds real AWS credentials or waits on the EC2 metadata endpoint."""
    isolate_aws(monkeypatch, tmp_path_factory.getbasetemp())
