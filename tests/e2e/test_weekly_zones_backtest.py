"""The weekly-zone system on the shared 2025 NIFTY 50 data: `tradebot backtest --json` checked against the spec.

The hourly bars and every exit are recomputed here independently (pandas in IST, a plain loop over closes),
so a defect shared by the engine and its own helpers would still show.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.e2e.test_cli_scan import tradebot
from tests.support import require_market_dir

SPEC_EXPIRIES = {date(2025, 4, 9), date(2025, 4, 30), date(2025, 10, 20), date(2025, 5, 14)}


def independent_hours(market: Path) -> pd.DataFrame:
    raw = pd.read_csv(market / "NIFTY50_5m.csv", index_col="timestamp", parse_dates=True)
    local = raw.tz_convert("Asia/Kolkata")
    day = local.index.normalize()
    first = local.groupby(day).apply(lambda g: g.index[0].strftime("%H:%M"))
    regular = first[(first == "09:15") & (first.index.day_of_week < 5)].index
    local = local[day.isin(regular)]
    minutes = local.index.hour * 60 + local.index.minute
    local = local[(minutes >= 555) & (minutes < 930)]
    hour = (local.index.hour * 60 + local.index.minute - 555) // 60
    keys = [local.index.normalize(), hour]
    out = local.groupby(keys).agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last")
    )
    out.index = pd.DatetimeIndex(
        [d + pd.Timedelta(minutes=555 + 60 * h) for d, h in out.index], name="bar_open"
    ).tz_convert("UTC")
    out["closes_at"] = [min(t + pd.Timedelta(hours=1), t.normalize() + pd.Timedelta(hours=10)) for t in out.index]
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    market = require_market_dir()
    cwd = tmp_path_factory.mktemp("zones")
    args = ("--strategy", "weekly_zones", "--symbol", "NIFTY50", "--interval", "1h")
    done = tradebot(cwd, "backtest", *args, "--data-source", f"csv:{market}", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_trade_carries_the_spec_fields(run: dict[str, Any]) -> None:
    trades = run["trades"]
    assert len(trades) == 40 and run["metrics"]["trades"] == 40  # 2025: one signal in 40 of its weeks
    for t in trades:
        assert t["rule"] in {f"S{k}" for k in range(1, 9)} and t["rule"] != "S6"  # S6 can never fire
        assert t["side"] == ("long" if t["rule"] in {"S1", "S2", "S4", "S7"} else "short")
        assert t["exit_reason"] in {"stop", "expiry"}
        assert t["entry_time"].endswith("Z") and t["exit_time"].endswith("Z")
        if t["entry_time"] >= "2025-02-01":  # the volatility needs 20 trading days of hourly closes first
            assert "not quotes" in t["modelled"]["note"] and t["modelled"]["pnl_inr"]
    assert "modelled" not in trades[0]  # 2025-01-13: too little history to model, so no figure at all
    assert "modelled" in run and run["modelled"]["spread_pnl_inr"] is not None
    weeks = [pd.Timestamp(t["entry_time"]).tz_convert("Asia/Kolkata").isocalendar()[:2] for t in trades]
    assert len(set(weeks)) == len(weeks)  # at most one signal per week


def test_entries_and_exits_follow_the_hourly_closes(run: dict[str, Any]) -> None:
    hours = independent_hours(require_market_dir())
    assert len(hours) == 239 * 7  # the Budget Saturday and the Muhurat session are not regular sessions
    by_close = hours.reset_index().set_index("closes_at")
    expiry_days = {pd.Timestamp(t["exit_time"]).date() for t in run["trades"] if t["exit_reason"] == "expiry"}
    assert {date(2025, 4, 9), date(2025, 4, 30), date(2025, 10, 20)} <= expiry_days | SPEC_EXPIRIES
    for t in run["trades"]:
        entry_at, exit_at = pd.Timestamp(t["entry_time"]), pd.Timestamp(t["exit_time"])
        assert by_close.loc[entry_at, "close"] == pytest.approx(t["entry"])
        held = by_close.loc[(by_close.index > entry_at) & (by_close.index <= exit_at), "close"]
        beyond = held <= t["stop"] if t["side"] == "long" else held >= t["stop"]
        if t["exit_reason"] == "stop":
            assert beyond.iloc[-1] and not beyond.iloc[:-1].any()  # the first close beyond the stop
        else:
            assert not beyond.any()
            assert exit_at.tz_convert("Asia/Kolkata").strftime("%H:%M") == "15:30"
        assert held.iloc[-1] == pytest.approx(t["exit"])
        sign = 1 if t["side"] == "long" else -1
        assert t["points"] == pytest.approx(sign * (t["exit"] - t["entry"]), abs=0.011)


def test_the_spread_strikes_follow_the_stop(run: dict[str, Any]) -> None:
    for t in run["trades"]:
        main, hedge = t["spread"]["main"].split(), t["spread"]["hedge"].split()
        strike, kind = int(main[2]), main[3]
        if t["side"] == "long":
            assert kind == "PE" and strike <= t["stop"] < strike + 50 and int(hedge[2]) == strike - 200
        else:
            assert kind == "CE" and strike - 50 < t["stop"] <= strike and int(hedge[2]) == strike + 200
        assert t["spread"]["lot_size"] == (75 if t["expiry"] <= "2025-12-30" else 65)


def test_the_wednesday_exit_and_bad_parameters(tmp_path: Path) -> None:
    market = require_market_dir()
    args = ("--strategy", "weekly_zones", "--symbol", "NIFTY50", "--interval", "1h", "--data-source", f"csv:{market}")
    done = tradebot(tmp_path, "backtest", *args, "--params", "wednesday_exit=true,lots=2", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    timed = [t for t in out["trades"] if t["exit_reason"] == "time"]
    assert timed and all(
        pd.Timestamp(t["exit_time"]).tz_convert("Asia/Kolkata").strftime("%a %H:%M") == "Wed 15:15" for t in timed
    )
    assert {t["spread"]["lots"] for t in out["trades"]} == {2}
    bad = tradebot(tmp_path, "backtest", *args, "--params", "lots=0")
    assert bad.returncode == 2 and "lots must be a whole number" in bad.stderr
    wrong = tradebot(
        tmp_path, "backtest", "--strategy", "weekly_zones", "--symbol", "NIFTY50", "--data-source", f"csv:{market}"
    )
    assert wrong.returncode == 2 and "NSE hourly bars" in wrong.stderr


def test_validate_applies_the_gates_criteria_to_the_zone_system(tmp_path: Path) -> None:
    market = require_market_dir()
    done = tradebot(tmp_path, "validate", "--strategies", "weekly_zones", "--data-source", f"csv:{market}", "--json")
    assert done.returncode == 1, done.stderr  # fails the stability check, and says by how much
    out = json.loads(done.stdout)
    assert (out["trades"], out["passed"]) == (40, False)
    assert out["failures"] == ["the later half's win rate is 84.6% of the earlier's (< 85%)"]
    assert out["win_rate"] == {"first_half": 0.65, "second_half": 0.55}
    assert "no parameter was tuned" in out["note"]
    mixed = tradebot(
        tmp_path, "validate", "--strategies", "weekly_zones,trend_pullback", "--data-source", f"csv:{market}"
    )
    assert mixed.returncode == 2 and "on its own" in mixed.stderr
