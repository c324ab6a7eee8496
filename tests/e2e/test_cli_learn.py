"""`tradebot drift` and `tradebot learn` as processes over a database holding a baseline and recorded trades."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_drift_learning import seed


def tradebot(cwd: Path, *args: str, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`tradebot ARGS` run in `cwd` on `cwd/bot.db`, with interpreter options `python` (e.g. `-X importtime`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_"))}
    env["TRADEBOT_DB_PATH"] = str(cwd / "bot.db")
    return subprocess.run(
        [sys.executable, *python, "-m", "bot.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_drift_without_a_database_says_so(tmp_path: Path) -> None:
    done = tradebot(tmp_path, "drift")
    assert done.returncode == 0 and "No database" in done.stdout


def test_drift_prints_the_table_and_learn_stores_versions_and_rolls_back(tmp_path: Path) -> None:
    asyncio.run(seed(tmp_path / "bot.db"))
    drift = tradebot(tmp_path, "drift")
    assert drift.returncode == 0, drift.stderr
    assert "CRITICAL trend_pullback GBPUSD: CRITICAL · n=30 win 10% vs 50%" in drift.stdout
    assert "<b>" not in drift.stdout  # chat HTML is turned into plain text

    first = tradebot(tmp_path, "learn", "--no-backtests")
    assert first.returncode == 0, first.stderr
    assert "learned model v1 (command): 30 external; 1 baseline" in first.stdout
    assert "calibration: n/a: 30 scored outcomes; at least 100 are needed" in first.stdout  # no backtests
    # The losses closed in 2025 and the CLI learns at today's date: 0.5^(age / 90 days) leaves them little weight.
    weight = re.search(r"30 recorded outcomes \(weight (\d+\.\d)\)", first.stdout)
    assert weight is not None and float(weight.group(1)) < 1.0 and "→ ask_only" not in first.stdout

    again = tradebot(tmp_path, "learn", "--no-backtests")
    assert again.returncode == 0 and "learned model v2" in again.stdout
    back = tradebot(tmp_path, "learn", "--rollback")
    assert back.returncode == 0 and back.stdout.startswith("rolled back to v1")
    none = tradebot(tmp_path, "learn", "--rollback")
    assert none.returncode == 1 and "no earlier model version" in none.stderr


def test_learn_with_nothing_to_learn_from_exits_1_and_stores_no_model(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = tradebot(tmp_path, "learn", "--data-source", f"csv:{empty}")
    assert done.returncode == 1
    assert (
        "tradebot learn: nothing to learn from: no recorded outcomes and no baseline of a traded system; "
        "no backtest data: EURUSD: no data file for EURUSD 1h"
    ) in done.stderr
    with sqlite3.connect(tmp_path / "bot.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM learned_models").fetchone() == (0,)
