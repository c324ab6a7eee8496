"""The gate measures exactly the parameters it is given, out of sample, on the shared XAUUSD 1h bars."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from engine.backtest import BacktestConfig, backtest
from engine.gate import GateCriteria, oos_start, run_gate
from engine.pipeline import EngineConfig
from engine.sizing import RateHistory, Sizing
from engine.strategy import build_strategy
from engine.walkforward import WalkForwardConfig
from tests.support import shared_context

pytestmark = pytest.mark.shared_data

CONFIG = BacktestConfig(max_hold_bars=48)
ENGINE = EngineConfig(min_score=50)


def test_the_gate_measures_the_given_parameters_on_the_bars_after_the_in_sample_share() -> None:
    ctx = shared_context("XAUUSD")
    strategy = build_strategy("trend_pullback")
    wf = WalkForwardConfig(warmup_bars=strategy.warmup)
    report = run_gate(ctx, strategy, ENGINE, CONFIG, wf, GateCriteria())
    start = wf.windows(len(ctx))[0].test.start
    assert report.oos_from == ctx.bars.bar_time(start)
    # Out of sample is one continuous backtest of these very parameters from the cut: trade for trade.
    alone = backtest(ctx, strategy, ENGINE, CONFIG, start=start)
    assert report.oos_trades == alone.trades and report.oos.trades == len(alone.trades) == 112
    assert all(t.signal_index >= start for t in report.oos_trades)
    assert sum(p.stats.trades for p in report.periods) == report.oos.trades and len(report.periods) == wf.folds
    assert report.passed and report.failures == ()
    assert report.metrics()["oos_trades"] == 112 and report.score.trades == 112


def test_parameters_tuned_on_data_move_the_out_of_sample_start_past_it() -> None:
    ctx = shared_context("XAUUSD")
    strategy = build_strategy("trend_pullback", {"reward_risk": 3.0})
    wf = WalkForwardConfig(warmup_bars=strategy.warmup)
    untuned_start = wf.windows(len(ctx))[0].test.start
    tuned_until = ctx.bars.bar_time(untuned_start) + timedelta(days=60)
    start = oos_start(len(ctx), wf, ctx.bars.time, tuned_until)
    assert start > untuned_start and ctx.bars.bar_time(start) >= tuned_until > ctx.bars.bar_time(start - 1)
    report = run_gate(ctx, strategy, ENGINE, CONFIG, wf, GateCriteria(), tuned_until=tuned_until)
    assert report.oos_from == ctx.bars.bar_time(start)
    assert all(t.trade.entry_time > tuned_until for t in report.oos_trades)  # no trade it was fitted on counts


def test_the_verdict_names_every_criterion_missed_and_no_out_of_sample_data_is_an_error() -> None:
    ctx = shared_context("EURUSD")
    strategy = build_strategy("trend_pullback")
    wf = WalkForwardConfig(warmup_bars=strategy.warmup)
    report = run_gate(ctx, strategy, ENGINE, CONFIG, wf, GateCriteria(min_oos_trades=500))
    assert not report.passed
    assert report.failures[0] == f"{report.oos.trades} out-of-sample trades < 500"
    assert any(f.startswith("out-of-sample profit factor") for f in report.failures)
    late = ctx.bars.bar_time(len(ctx) - 1) + timedelta(hours=2)
    with pytest.raises(ValueError, match="no out-of-sample bars: the parameters were tuned on data until"):
        run_gate(ctx, strategy, ENGINE, CONFIG, wf, GateCriteria(), tuned_until=late)


def test_a_system_that_cannot_be_sized_fails_saying_so_first() -> None:
    ctx = shared_context("RELIANCE", "5m")
    strategy = build_strategy("defining_order")
    wf = WalkForwardConfig(warmup_bars=strategy.warmup)
    usd = replace(CONFIG, sizing=Sizing(account_currency="USD"))
    report = run_gate(ctx, strategy, ENGINE, usd, wf, GateCriteria())  # INR prices, a USD account, no USDINR
    assert report.oos.trades == 0 and not report.passed
    assert re.fullmatch(
        r"\d+ out-of-sample setups not traded: cannot size in USD: RELIANCE: no INRUSD or USDINR price .*",
        report.failures[0],
    )
    rated = replace(usd, rates=RateHistory(fixed={"USDINR": Decimal(86)}))
    assert run_gate(ctx, strategy, ENGINE, rated, wf, GateCriteria()).oos.trades > 0
