"""The learning run's backtests and fit in the bot's worker process: the same model as computed here, scikit-learn
and scipy never loaded in the bot's own process, and a worker that dies costs nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import bot.services.learner as learner_module
from bot.config import load_settings
from bot.ops.clock import BotClock
from bot.ops.worker import WorkerProcess
from bot.services.configure import backtest_config, watchlist
from bot.services.learner import LearnedModel, Learner
from bot.services.scan import select
from data.market.csv_provider import CsvProvider
from data.sqlite.store import SqliteStore
from tests.support import require_market_dir

AT = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)
SYMBOLS = ("EURUSD", "BTCUSDT")


@pytest.fixture
async def worker() -> AsyncIterator[WorkerProcess]:
    process = WorkerProcess()
    yield process
    process.close()


async def learned(tmp_path: Path, name: str, worker: WorkerProcess | None) -> LearnedModel:
    market = require_market_dir()
    settings = load_settings(
        {"TRADEBOT_LEARNING__BACKTEST_BARS": "4000"}, data_source=f"csv:{market}", db_path=tmp_path / f"{name}.db"
    )
    items = select(watchlist(settings), SYMBOLS, None)
    async with await SqliteStore.open(tmp_path / f"{name}.db") as store:
        learner = Learner(store, CsvProvider(market), BotClock(AT), settings, items, worker=worker)
        model = await learner.learn(trigger="test")
    assert isinstance(model, LearnedModel), model
    return model


def same_model(a: LearnedModel, b: LearnedModel) -> None:
    assert a.summary["outcomes"] == b.summary["outcomes"] and a.summary["outcomes"]["backtest"] > 100
    assert a.calibration_note == b.calibration_note
    assert a.posteriors == b.posteriors and a.score_weights == b.score_weights


def _not_here(*_: Any, **__: Any) -> Any:
    raise AssertionError("a learning backtest ran in the bot's process, not the worker's")


async def test_learning_backtests_in_the_worker_give_the_model_computed_here(
    tmp_path: Path, worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = await learned(tmp_path, "here", None)
    monkeypatch.setattr(learner_module, "backtest", _not_here)  # this process's; the worker imports its own
    monkeypatch.setattr(learner_module, "fit_calibration", _not_here)
    there = await learned(tmp_path, "there", worker)  # the learner starts the worker and waits for it
    same_model(there, here)


async def test_a_worker_that_dies_during_learning_costs_nothing(
    tmp_path: Path, worker: WorkerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    here = await learned(tmp_path, "here", None)
    assert await worker.warm("bot.services.learner")
    pid = worker.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="bot.services.learner"):
        there = await learned(tmp_path, "there", worker)
    assert "learning: the worker failed (WorkerFailed: the worker process died); learned in the bot" in caplog.text
    same_model(there, here)


def test_a_worker_that_does_not_hold_every_backtest_of_the_run_refuses_to_fit(tmp_path: Path) -> None:
    market = require_market_dir()
    settings = load_settings({"TRADEBOT_LEARNING__BACKTEST_BARS": "4000"}, data_source=f"csv:{market}")
    (item,) = select(watchlist(settings), ("EURUSD",), None)
    frame = CsvProvider(market).fetch(item.instrument, AT, 4000)
    configs = (settings.engine_config(), backtest_config(settings))
    assert learner_module.keep_backtest_outcomes("run", item, frame, AT, *configs, frozenset()) > 0
    config = learner_module.learning_config(settings)
    with pytest.raises(LookupError, match="holds the backtests of 1 of the run's 2 instruments"):
        learner_module.fit_kept("run", 2, [], {}, AT, config, {})
    with pytest.raises(LookupError, match="holds the backtests of 0 of the run's 1 instruments"):
        learner_module.fit_kept("run", 1, [], {}, AT, config, {})  # what was kept went with the first attempt


def _libraries() -> list[str]:
    return sorted(m for m in ("sklearn", "scipy") if m in sys.modules)


async def test_the_worker_that_learned_is_replaced_by_a_fresh_one(tmp_path: Path, worker: WorkerProcess) -> None:
    assert await worker.warm("bot.services.scan")
    pid = worker.pid()
    await learned(tmp_path, "there", worker)
    assert worker.ready and worker.pid() not in (None, pid)  # the replacement was ready before learning ended
    assert await worker.call(60, _libraries) == []  # scikit-learn and scipy left with the one that learned
    for _ in range(200):
        if not Path(f"/proc/{pid}").exists():
            break
        await asyncio.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()  # it exited


BOT = """
import asyncio, sys
from tests.integration.test_learning_worker import learned
from bot.ops.worker import WorkerProcess
from pathlib import Path
async def main():
    worker = WorkerProcess()
    try:
        await learned(Path(sys.argv[1]), "bot", worker)
    finally:
        worker.close()
    print(sorted(m for m in ("sklearn", "scipy") if m in sys.modules))
asyncio.run(main())
"""


def test_a_bot_that_learns_never_loads_scikit_learn_or_scipy_itself(tmp_path: Path) -> None:
    require_market_dir()
    done = subprocess.run(
        [sys.executable, "-c", BOT, str(tmp_path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
