"""`tradebot scan` as a trader runs it: a real process, the shared CSV files and a real SQLite file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require_market_dir

AS_OF = "2025-06-12T09:40:00Z"


def tradebot(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def csv_source() -> str:
    return f"csv:{require_market_dir()}"


def test_scan_json_on_real_data_persists_the_run(tmp_path: Path, csv_source: str) -> None:
    db = tmp_path / "state" / "bot.db"
    done = tradebot(
        tmp_path, "scan", "--data-source", csv_source, "--as-of", AS_OF, "--json", env={"TRADEBOT_DB_PATH": str(db)}
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["as_of"] == AS_OF and run["evaluated"] == 16 and run["errors"] == []
    setups = {(s["symbol"], s["strategy"], s["side"]) for s in run["setups"]}
    assert ("GBPUSD", "trend_pullback", "long") in setups
    first = run["setups"][0]
    assert set(first) >= {"signal_id", "entry", "stop", "targets", "reward_risk", "quality", "components", "reasons"}
    assert isinstance(first["entry"], str) and "." in first["entry"]  # exact decimal text, not a float
    gbp = next(s for s in run["setups"] if s["symbol"] == "GBPUSD")
    system = gbp["system"]
    assert set(system) == {"fingerprint", "params_id", "params", "tuned_until", "code"}
    assert system["params"]["trend_slow"] == 200 and len(system["fingerprint"]) == 16
    assert gbp["validation"]["status"] == "unvalidated" and gbp["validation"]["fingerprint"] == system["fingerprint"]
    assert all(run["setups"][i]["quality"] >= run["setups"][i + 1]["quality"] for i in range(len(setups) - 1))

    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT setups_count FROM analysis_runs WHERE id = ?", (run["run_id"],)).fetchone()
        stored = {row[0] for row in conn.execute("SELECT signal_id FROM signals")}
    assert count == len(run["setups"])
    assert stored == {s["signal_id"] for s in run["setups"]}


def test_scan_loads_the_history_its_indicators_need_and_finds_the_setup_the_backtest_trades(
    tmp_path: Path, csv_source: str
) -> None:
    # With the former 2,000-bar window the 4h EMA200 restarted from a later seed and this scan found nothing.
    args = ("--data-source", csv_source, "--symbols", "EURUSD", "--strategies", "trend_pullback", "--json")
    env = {"TRADEBOT_DB_PATH": str(tmp_path / "bot.db")}
    done = tradebot(tmp_path, "scan", "--as-of", "2025-08-11T02:00:00Z", *args, env=env)
    assert done.returncode == 0, done.stderr
    [setup] = json.loads(done.stdout)["setups"]
    levels = (setup["side"], setup["entry"], setup["stop"], setup["targets"])
    assert levels == ("long", "1.16583", "1.16386", ["1.16977"])
    backtest = tradebot(
        tmp_path, "backtest", "--strategy", "trend_pullback", "--symbol", "EURUSD", "--json", *args[:2], env=env
    )
    assert backtest.returncode == 0, backtest.stderr
    assert setup["signal_id"] in {t["signal_id"] for t in json.loads(backtest.stdout)["trades"]}


def test_scan_table_and_verbose_reasons(tmp_path: Path, csv_source: str) -> None:
    done = tradebot(
        tmp_path, "scan", "--data-source", csv_source, "--as-of", AS_OF, "--symbols", "GBPUSD,SBIN", "--verbose"
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "symbol" in out and "R:R" in out and "quality" in out
    assert "GBPUSD" in out and "trend_pullback" in out
    assert "rejected symbols (0):" in out and "rejected setups" in out
    assert (tmp_path / "var" / "tradebot.db").is_file()  # the default database location


def test_no_setups_is_a_normal_outcome(tmp_path: Path, csv_source: str) -> None:
    done = tradebot(tmp_path, "scan", "--data-source", csv_source, "--as-of", AS_OF, "--symbols", "SBIN")
    assert done.returncode == 0, done.stderr
    assert "no setups" in done.stdout


def test_no_usable_data_at_all_exits_1_with_reasons(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = tradebot(tmp_path, "scan", "--data-source", f"csv:{empty}", "--as-of", AS_OF, "--verbose")
    assert done.returncode == 1
    assert "no data file for EURUSD 1h" in done.stdout
    assert "no symbol had usable data" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["scan", "--as-of", "2025-06-12T09:40:00"], {}, "has no timezone"),
        (["scan", "--as-of", "yesterday"], {}, "not an ISO-8601 instant"),
        (["scan", "--symbols", "NOPE"], {}, "unknown symbol(s) NOPE"),
        (["scan", "--strategies", "martingale"], {}, "unknown or disabled strategy(ies) martingale"),
        (["scan", "--data-source", "ftp://x"], {}, "must be 'yfinance' or 'csv:DIR'"),
        (["scan", "--data-source", "csv:/nonexistent"], {}, "names the folder '/nonexistent', which does not exist"),
        (["validate", "--data-source", "csv:/nonexistent"], {}, "names the folder '/nonexistent'"),
        (["learn", "--data-source", "csv:/nonexistent"], {}, "names the folder '/nonexistent'"),
        (["scan"], {"TRADEBOT_RISK_PER_TRADE": "0.05"}, "did you mean TRADEBOT_BOT__RISK_PER_TRADE?"),
        (["run"], {"TRADEBOT_LOGGING_FORMAT": "json"}, "did you mean TRADEBOT_LOGGING__FORMAT?"),
        (["scan"], {"TRADEBOT_CONFG": "other.toml"}, "TRADEBOT_CONFG: no setting has this name"),
        (["scan"], {"TRADEBOT_CONFIG": "missing.toml"}, "TRADEBOT_CONFIG: config file not found"),
        (["scan"], {"TRADEBOT_SCAN__HISTORY_BARS": "ten"}, "scan.history_bars: Input should be a valid integer"),
        (["frobnicate"], {}, "invalid choice"),
    ],
)
def test_bad_usage_and_config_exit_2_without_traceback(
    tmp_path: Path, csv_source: str, args: list[str], env: dict[str, str], message: str
) -> None:
    if "--data-source" not in args and args[0] == "scan":
        args = [*args, "--data-source", csv_source]
    done = tradebot(tmp_path, *args, env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "var").exists()  # bad input touches nothing


def test_bad_config_file_key_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "tradebot.toml").write_text('[[watchlist]]\nsymbol = "EURUSD"\ntick_size = "-1"\n')
    done = tradebot(tmp_path, "scan")
    assert done.returncode == 2
    assert "watchlist.0.tick_size: Input should be greater than 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_scan_json_names_the_baseline_each_setup_trades_under(tmp_path: Path, csv_source: str) -> None:
    env = {"TRADEBOT_DB_PATH": str(tmp_path / "bot.db")}
    args = ("--data-source", csv_source, "--symbols", "XAUUSD", "--strategies", "trend_pullback")
    whole = tradebot(tmp_path, "validate", *args, env=env)  # on the whole file, which ends after AS_OF
    assert whole.returncode == 0, whole.stderr
    done = tradebot(tmp_path, "scan", *args, "--as-of", AS_OF, "--json", env=env)
    assert done.returncode == 0, done.stderr
    [setup] = json.loads(done.stdout)["setups"]
    v = setup["validation"]
    assert (v["status"], v["baseline_version"]) == ("stale", 1)  # measured on data from after AS_OF: look-ahead
    assert "after now" in v["reason"] and v["fingerprint"] == setup["system"]["fingerprint"]

    until = tradebot(tmp_path, "validate", *args, "--until", AS_OF, "--json", env=env)
    [gate] = json.loads(until.stdout)
    assert gate["data_to"] <= "2025-06-12T09:40:00+00:00"
    [setup] = json.loads(tradebot(tmp_path, "scan", *args, "--as-of", AS_OF, "--json", env=env).stdout)["setups"]
    v = setup["validation"]
    assert v["baseline_version"] == 2 and v["status"] == ("validated" if gate["passed"] else "failed")
    assert v["oos_trades"] == gate["metrics"]["oos_trades"] and v["win_rate"] == gate["win_rate"]
    assert v["win_rate"]["low"] < v["win_rate"]["value"] < v["win_rate"]["high"] and v["win_rate"]["confidence"] == 0.9
    assert v["score"]["trades"] == gate["score"]["trades"]
    table = tradebot(tmp_path, "scan", *args, "--as-of", AS_OF, env=env).stdout
    cell = f"v2 {v['expectancy_r']['value']:+.2f}R n={v['oos_trades']}" if gate["passed"] else "failed"
    assert "validation" in table and cell in table


def test_a_config_file_in_another_encoding_exits_2_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "tradebot.toml").write_bytes('[bot]\nmode = "manual"  # café\n'.encode("latin-1"))
    done = tradebot(tmp_path, "scan")
    assert done.returncode == 2
    assert "tradebot.toml: not UTF-8 text (at byte offset 28): save it as UTF-8" in done.stderr
    assert "Traceback" not in done.stderr
