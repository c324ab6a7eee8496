"""Shared fixtures."""

from __future__ import annotations

import compileall
import os
import sys
from pathlib import Path

import pytest

from bot.ops.executors import available_cpus
from tests.fakes.aws import isolate_aws
from tests.support import require_market_dir

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "data", "bot")


def pytest_configure(config: pytest.Config) -> None:
    """Compile the project's modules once, before any test process starts, where Python writes no bytecode itself.

    With PYTHONDONTWRITEBYTECODE set (as in some CI images) every test process, and every bot or CLI process a
    test starts, would compile the whole project from source again (~0.35 s a process); existing bytecode is
    still read. Only what changed since the last run is compiled. The test processes also keep pytest's
    rewritten test modules (which it reads whatever the setting, but writes only where bytecode may be
    written): each test process parsed and rewrote all of them on every run, 10-20 s of CPU a run."""
    if sys.dont_write_bytecode:
        if not hasattr(config, "workerinput"):
            for package in PACKAGES:
                compileall.compile_dir(ROOT / package, quiet=2, workers=0)  # a failure only costs time
        sys.dont_write_bytecode = False  # this process only: the bot and CLI processes tests start read the setting


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: one test process more than the CPUs (PYTEST_XDIST_AUTO_NUM_WORKERS still decides when set).

    Many end-to-end tests wait on a bot or CLI process, a timer or a fake server; an extra process keeps the
    CPUs busy meanwhile (measured on 2 cores: 3 processes finish the suite ~10 % sooner than 2)."""
    del config
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return available_cpus() + 1


@pytest.fixture(scope="session")
def market_dir() -> Path:
    """The shared market-data folder; tests using it skip with a reason when it is absent."""
    return require_market_dir()


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test (nor a bot process it starts) finds real AWS credentials or waits on the EC2 metadata endpoint."""
    isolate_aws(monkeypatch, tmp_path_factory.getbasetemp())
