"""`tradebot validate` and `tradebot backtest` as a trader runs them, on the shared data, small and fast."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require_market_dir

SMALL = """
[backtest]
executor = "{executor}"
workers = 2
folds = 2
candidates = 6
min_train_trades = 5

[backtest.gate]
min_oos_trades = 5
"""


def tradebot(
    cwd: Path, *args: str, executor: str = "serial", keep_config: bool = False
) -> subprocess.CompletedProcess[str]:
    if not keep_config:
        (cwd / "tradebot.toml").write_text(SMALL.format(executor=executor))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env["TRADEBOT_DATA_SOURCE"] = f"csv:{require_market_dir()}"
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_validate_measures_the_traded_parameters_and_stores_versioned_baselines_of_that_system(
    tmp_path: Path,
) -> None:
    done = tradebot(tmp_path, "validate", "--symbols", "XAUUSD", "--strategies", "trend_pullback")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "strategy" in out and "oos trades" in out and "trend_pullback" in out and "XAUUSD" in out
    assert "PASS" in out and "1 of 1 traded systems passed (baselines saved)" in out
    assert "40% (32%..48%)" in out and "+0.13 (-0.10..+0.35)" in out  # win rate and expectancy with 90% intervals
    tradebot(tmp_path, "validate", "--symbols", "XAUUSD", "--strategies", "trend_pullback")
    with sqlite3.connect(tmp_path / "var" / "tradebot.db") as conn:
        rows = conn.execute(
            "SELECT strategy, symbol, version, passed, r_multiples, fingerprint, system, params FROM baselines"
        ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("trend_pullback", "XAUUSD", 1), ("trend_pullback", "XAUUSD", 2)]
    assert len(json.loads(rows[0][4])) == 112  # the out-of-sample R sample drift compares live trades with
    assert rows[0][5] == rows[1][5] and len(rows[0][5]) == 16  # the same system, fingerprinted
    system = json.loads(rows[0][6])
    assert system["params"] == json.loads(rows[0][7]) and system["params"]["trend_slow"] == 200  # the defaults
    assert system["tuned_until"] is None and system["code"]


def test_validate_json_is_the_same_over_a_local_dask_cluster(tmp_path: Path) -> None:
    args = ("validate", "--symbols", "GBPUSD", "--strategies", "trend_pullback", "--json", "--no-save")
    (tmp_path / "serial").mkdir()
    (tmp_path / "dask").mkdir()
    serial = tradebot(tmp_path / "serial", *args)
    dask = tradebot(tmp_path / "dask", *args, executor="dask:local")
    assert serial.returncode in (0, 1) and dask.returncode == serial.returncode, dask.stderr[-2000:]
    first, second = json.loads(serial.stdout), json.loads(dask.stdout)
    assert first == second
    (result,) = first
    assert result["strategy"] == "trend_pullback" and len(result["periods"]) == 2
    assert result["oos_from"] <= result["periods"][0]["from"] and result["params"]["trend_slow"] == 200
    assert set(result["win_rate"]) == {"value", "low", "high", "confidence"}
    assert not (tmp_path / "serial" / "var").exists()  # --no-save stores nothing


def test_optimise_proposes_from_the_first_training_window_and_adopting_writes_and_validates_it(
    tmp_path: Path,
) -> None:
    args = ("optimise", "--strategy", "trend_pullback", "--symbol", "XAUUSD")
    looked = tradebot(tmp_path, *args, "--json")
    assert looked.returncode == 0, looked.stderr
    report = json.loads(looked.stdout)
    assert report["adopted_into"] is None and not (tmp_path / "var").exists()  # looking changes nothing
    first = report["folds"][0]
    assert all(f["train"][1] <= f["test"][0] for f in report["folds"])  # choices made before each test window
    # Both measured only after the tuning data (a longer warm-up of the proposal moves its in-sample cut later).
    assert report["proposal_gate"]["oos_from"] >= report["tuned_until"] == report["current_gate"]["oos_from"]
    assert report["proposal"] and all(first["chosen"][k] == v for k, v in report["proposal"].items())

    config = tmp_path / "tradebot.toml"
    comment = "# the trader's own notes stay\n"
    config.write_text(comment + config.read_text())
    adopted = tradebot(tmp_path, *args, "--adopt", keep_config=True)
    assert adopted.returncode == 0, adopted.stderr
    assert "adopted into tradebot.toml" in adopted.stdout and "restart the bot" in adopted.stdout
    text = config.read_text()
    assert text.startswith(comment) and "[strategies.trend_pullback.pairs.XAUUSD]" in text
    assert f"tuned_until = {report['tuned_until'].replace('+00:00', 'Z')}" in text
    with sqlite3.connect(tmp_path / "var" / "tradebot.db") as conn:
        [(system,)] = conn.execute("SELECT system FROM baselines").fetchall()
    stored = json.loads(system)
    assert stored["tuned_until"] == report["tuned_until"]
    assert all(stored["params"][k] == v for k, v in report["proposal"].items())  # the adopted system was validated
    # The other strategies still run: naming one strategy in the file never turns the others off.
    listed = tradebot(tmp_path, "validate", "--symbols", "EURUSD", "--json", "--no-save", keep_config=True)
    assert {r["strategy"] for r in json.loads(listed.stdout)} == {"pattern_reversal", "trend_pullback"}


def test_nothing_passing_exits_non_zero_with_reasons(tmp_path: Path) -> None:
    done = tradebot(tmp_path, "validate", "--symbols", "EURUSD", "--strategies", "pattern_reversal")
    assert done.returncode == 1
    assert "FAIL:" in done.stdout and "0 of 1" in done.stdout


def test_backtest_prints_metrics_and_draws_the_equity_curve(tmp_path: Path) -> None:
    png = tmp_path / "out" / "equity.png"
    done = tradebot(tmp_path, "backtest", "--strategy", "trend_pullback", "--symbol", "EURUSD", "--plot", str(png))
    assert done.returncode == 0, done.stderr
    for part in ("trend_pullback on EURUSD 1h", "win rate", "profit factor", "max drawdown", "calibration:"):
        assert part in done.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    [learned] = [line for line in done.stdout.splitlines() if line.startswith("learned calibration: ")]
    assert "held-out trades" in learned and ("does NOT beat" in learned) != ("beats the base rate" in learned)
    curve = png.with_name("equity-reliability.png")
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and curve.stat().st_size > 10_000


def test_backtest_json_window_and_params(tmp_path: Path) -> None:
    done = tradebot(
        tmp_path,
        "backtest",
        "--strategy",
        "trend_pullback",
        "--symbol",
        "EURUSD",
        "--from",
        "2025-09-01T00:00:00Z",
        "--to",
        "2026-03-01T00:00:00Z",
        "--params",
        "atr_stop_mult=2.0,reward_risk=1.5",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["params"]["atr_stop_mult"] == 2.0 and result["params"]["reward_risk"] == 1.5
    assert result["trades"], "six months of EURUSD give trend_pullback trades"
    learned = result["learned_calibration"]
    assert isinstance(learned, str) and "scored" in learned  # too few trades in six months: the reason, no model
    for trade in result["trades"]:
        assert "2025-09-01" <= trade["entry_time"] < "2026-03-02"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--params", "atr_stop_mult"], "--params expects k=v pairs"),
        (["--params", "bogus=1"], "unknown parameter(s) bogus"),
        (["--params", "atr_stop_mult=wide"], "atr_stop_mult: Input should be a valid number"),
    ],
)
def test_backtest_bad_parameters_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = tradebot(tmp_path, "backtest", "--strategy", "trend_pullback", "--symbol", "EURUSD", *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbols", "EURUSD,NOPE"], "unknown symbol(s) NOPE; watchlist: "),
        (["--strategies", "martingale"], "unknown or disabled strategy(ies) martingale; enabled: "),
        (["--symbols", "SPY", "--strategies", "trend_pullback"], "no enabled strategy applies to the chosen symbols"),
    ],
)
def test_validate_names_a_mistyped_symbol_or_strategy_and_exits_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = tradebot(tmp_path, "validate", "--no-save", *args)
    assert done.returncode == 2 and done.stdout == ""
    assert message in done.stderr and "Traceback" not in done.stderr
