"""`tradebot report`, `tradebot audit` and the command line's conventions, as processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from bot.cli.parser import INTERVALS
from engine.domain import Interval
from tests.e2e.test_cli_learn import tradebot
from tests.e2e.test_drift_learning import seed


def test_the_parser_lists_every_interval() -> None:
    assert tuple(i.value for i in Interval) == INTERVALS


def test_version_and_help_need_no_configuration(tmp_path: Path) -> None:
    version = tradebot(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.strip() == "tradebot 0.1.0"
    helped = tradebot(tmp_path, "report", "--help")
    assert helped.returncode == 0 and "--daily" in helped.stdout and "-c CONFIG, --config CONFIG" in helped.stdout


ANALYSIS_LIBRARIES = frozenset({"pandas", "talib", "matplotlib", "scipy", "sklearn", "exchange_calendars"})


def imported(stderr: str) -> set[str]:
    """The modules a `python -X importtime` process imported, by their dotted names."""
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def test_commands_that_only_read_or_flag_the_database_load_no_analysis_library(tmp_path: Path) -> None:
    outputs = {}
    for command in (("pause",), ("resume",), ("audit", "-n", "5"), ("shadow",), ("db", "backup")):
        done = tradebot(tmp_path, *command, python=("-X", "importtime"))
        assert done.returncode == 0, done.stderr[-2000:]
        loaded = imported(done.stderr)
        assert "bot.cli.commands" in loaded and "data.sqlite.store" in loaded  # it did import the command's own
        heavy = {name for name in loaded if name.split(".")[0] in ANALYSIS_LIBRARIES}
        assert not heavy, f"tradebot {' '.join(command)} imported {sorted(heavy)[:5]}"
        outputs[command[0]] = done.stdout
    assert outputs["pause"].startswith("tradebot is paused:") and outputs["resume"].startswith("tradebot is running:")
    assert "Audit trail, newest 2 events" in outputs["audit"] and "cli · paused resumed" in outputs["audit"]
    assert "No shadow orders recorded" in outputs["shadow"] and outputs["db"].startswith("backup ")


def test_a_report_reads_through_the_bots_services_without_pandas_or_the_chat_library(tmp_path: Path) -> None:
    asyncio.run(seed(tmp_path / "bot.db"))
    first = tradebot(tmp_path, "report", "--json")  # builds the exchange calendars into the cache, as `health` does
    assert first.returncode == 0, first.stderr[-2000:]
    again = tradebot(tmp_path, "report", "--json", python=("-X", "importtime"))
    assert again.returncode == 0, again.stderr[-2000:]
    loaded = imported(again.stderr)
    assert "bot.bootstrap" in loaded and "bot.services.reporting" in loaded  # the bot's own services answered
    assert not {name for name in loaded if name.split(".")[0] in {*ANALYSIS_LIBRARIES, "telegram"}}
    assert json.loads(again.stdout) == json.loads(first.stdout)


def test_health_keeps_the_exchange_calendars_so_the_next_run_loads_neither_the_library_nor_pandas(
    tmp_path: Path,
) -> None:
    first = tradebot(tmp_path, "health", "--json")
    assert first.returncode == 1, first.stderr[-2000:]  # no bot is running here: unhealthy, said as such
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["calendar-XNSE.json", "calendar-XNYS.json"]
    again = tradebot(tmp_path, "health", "--json", python=("-X", "importtime"))
    assert again.returncode == 1, again.stderr[-2000:]
    loaded = imported(again.stderr)
    assert "bot.ops.health" in loaded
    assert not {name for name in loaded if name.split(".")[0] in ANALYSIS_LIBRARIES}
    checks = [[(c["name"], c["ok"]) for c in json.loads(done.stdout)["checks"]] for done in (first, again)]
    assert checks[0] == checks[1] and ("runs", False) in checks[1]  # the same verdicts; the schedule still known


def test_a_config_flag_on_any_command_is_read_and_a_missing_one_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text("[bot]\naccount_currency = 'EUR'\n")
    done = tradebot(tmp_path, "report", "--daily", "-n", "2", "-c", str(config))
    assert done.returncode == 0, done.stderr
    missing = tradebot(tmp_path, "-c", str(tmp_path / "nope.toml"), "audit")
    assert (
        missing.returncode == 2
        and missing.stderr.strip() == f"tradebot: --config {tmp_path / 'nope.toml'}: no such file"
    )


def test_report_and_audit_read_the_recorded_trades(tmp_path: Path) -> None:
    asyncio.run(seed(tmp_path / "bot.db"))
    profit = tradebot(tmp_path, "report", "--json")
    assert profit.returncode == 0, profit.stderr
    figures = json.loads(profit.stdout)
    assert figures["closed"]["trades"] == 30 and figures["currency"] == "USD"
    assert figures["closed"]["net_pnl"].startswith("-")  # exact money as a string

    trades = tradebot(tmp_path, "report", "--trades", "-n", "3")
    assert trades.returncode == 0 and "Last 3 closed trades (USD, exit date UTC)" in trades.stdout
    assert "<b>" not in trades.stdout

    pairs = tradebot(tmp_path, "report", "--pairs", "--json")
    assert json.loads(pairs.stdout)["pairs"][0]["name"] == "trend_pullback GBPUSD"

    audit = tradebot(tmp_path, "audit", "--json", "-n", "5")
    assert audit.returncode == 0, audit.stderr
    events = [json.loads(line) for line in audit.stdout.splitlines()]
    assert events and all({"at", "kind", "actor", "subject", "detail"} <= set(e) for e in events)


def test_a_reader_leaving_the_pipe_ends_quietly(tmp_path: Path) -> None:
    asyncio.run(seed(tmp_path / "bot.db"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_"))}
    env["TRADEBOT_DB_PATH"] = str(tmp_path / "bot.db")
    done = subprocess.run(
        f"{sys.executable} -m bot.cli report --daily -n 60 | head -1",
        shell=True,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.startswith("Daily P&L"), done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
