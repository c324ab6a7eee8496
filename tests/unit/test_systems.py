"""Systems, fingerprints and validation status: a baseline validates exactly the system that trades."""

from __future__ import annotations

import ast
import importlib.util
import math
import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bot.services.systems import MEASURING, TRADE_PATH
from engine.domain import Interval
from engine.gate import GateCriteria
from engine.performance import TradeStats
from engine.systems import (
    MIN_SCORE_TRADES,
    Baseline,
    BaselineStats,
    PairValidation,
    ScoreEdge,
    SystemSpec,
    ValidationStatus,
    canonical_json,
    judge,
)
from tests.builders import baseline_for

NOW = datetime(2026, 7, 10, tzinfo=UTC)
SPEC = SystemSpec(
    strategy="trend_pullback",
    symbol="XAUUSD",
    interval=Interval.H1,
    params={"trend_slow": 200, "atr_stop_mult": 1.5, "trend_interval": Interval.H4},
    rules={"costs": {"slippage_bps": Decimal("1")}, "score": {"min_score": 50.0}},
    code="0123456789ab",
)


def baseline(spec: SystemSpec = SPEC, **changes: object) -> Baseline:
    """A passed baseline v1 of `spec` made at NOW: 10 trades, 4 wins."""
    r = (2.0, -1.0, 2.0, -1.0, -1.0, 2.0, 0.0, -1.0, 2.0, -1.0)
    return baseline_for(spec, NOW, **{"version": 1, "r_multiples": r, **changes})  # type: ignore[arg-type]


def test_the_fingerprint_changes_with_anything_that_decides_trades_and_only_then() -> None:
    same = SystemSpec(
        strategy="trend_pullback",
        symbol="XAUUSD",
        interval=Interval.H1,
        params={"atr_stop_mult": 1.5, "trend_interval": "4h", "trend_slow": 200},  # other order, text for the enum
        rules={"score": {"min_score": 50.0}, "costs": {"slippage_bps": "1"}},
        code="0123456789ab",
    )
    assert same.fingerprint == SPEC.fingerprint and len(SPEC.fingerprint) == 16
    changed = {
        "parameters": replace(SPEC, params={**SPEC.params, "trend_slow": 225}),
        "trading rules": replace(SPEC, rules={**SPEC.rules, "score": {"min_score": 60.0}}),
        "engine code": replace(SPEC, code="ba9876543210"),
        "tuning": replace(SPEC, tuned_until=NOW - timedelta(days=300)),
    }
    for word, spec in changed.items():
        assert spec.fingerprint != SPEC.fingerprint
        assert spec.differences(SPEC.to_json()) == (word,)
    assert changed["parameters"].params_id != SPEC.params_id
    assert changed["engine code"].params_id == SPEC.params_id
    assert pickle.loads(pickle.dumps(SPEC)) == SPEC  # jobs carry it to worker processes


def test_canonical_json_refuses_what_it_cannot_say_exactly() -> None:
    assert canonical_json({"b": Decimal("1.10"), "a": (1, 2)}) == '{"a":[1,2],"b":"1.10"}'
    with pytest.raises(TypeError, match="no canonical JSON form"):
        canonical_json({"x": object()})
    with pytest.raises(ValueError, match="timezone-aware UTC"):
        canonical_json(datetime(2025, 1, 1))


def test_a_pair_never_validated_is_unvalidated() -> None:
    verdict = judge(SPEC, [], NOW, win_r=0.05)
    assert verdict.status is ValidationStatus.UNVALIDATED and not verdict.validated
    assert "never validated" in verdict.reason and "NOT VALIDATED" in verdict.line()


def test_a_passed_baseline_of_exactly_this_system_validates_it_with_its_intervals() -> None:
    verdict = judge(SPEC, [baseline()], NOW, win_r=0.05, max_age=timedelta(days=90))
    assert verdict.status is ValidationStatus.VALIDATED and verdict.validated and verdict.version == 1
    assert verdict.stats is not None and verdict.stats.trades == 10
    assert verdict.line().startswith("✅ validated v1, out of sample: 10 trades · win 40% (")


def test_another_systems_baseline_makes_the_pair_stale_and_says_what_changed() -> None:
    tuned = replace(SPEC, params={**SPEC.params, "trend_slow": 225})
    verdict = judge(SPEC, [baseline(tuned, version=3)], NOW, win_r=0.05)
    assert verdict.status is ValidationStatus.STALE and not verdict.validated
    assert verdict.reason.startswith("baseline v3 validated different parameters")
    old = baseline(fingerprint="", system={})  # stored before systems were fingerprinted
    assert "validated before systems were fingerprinted" in judge(SPEC, [old], NOW, win_r=0.05).reason


def test_a_baseline_past_its_shelf_life_is_stale_and_a_newer_one_of_the_system_wins() -> None:
    aged = baseline(data_to=NOW - timedelta(days=91))
    verdict = judge(SPEC, [aged], NOW, win_r=0.05, max_age=timedelta(days=90))
    assert verdict.status is ValidationStatus.STALE and "more than 90 days ago" in verdict.reason
    failed = baseline(version=2, passed=False, reasons=("out-of-sample profit factor 0.97 < 1.2",))
    verdict = judge(SPEC, [baseline(), failed], NOW, win_r=0.05)
    assert verdict.status is ValidationStatus.FAILED and verdict.version == 2 and "0.97 < 1.2" in verdict.reason


def test_a_baseline_of_data_after_now_validates_nothing_then() -> None:
    later = baseline(data_to=NOW + timedelta(hours=1))  # e.g. a replay on the bot clock before the data's end
    verdict = judge(SPEC, [later], NOW, win_r=0.05)
    assert verdict.status is ValidationStatus.STALE and "after now" in verdict.reason


def test_the_status_snapshot_round_trips_through_json() -> None:
    verdict = judge(SPEC, [baseline(score=ScoreEdge(40, 0.31, 0.02))], NOW, win_r=0.05)
    assert PairValidation.from_json(verdict.to_json()) == verdict


def test_win_rate_interval_is_clopper_pearson_and_expectancy_interval_is_student_t() -> None:
    rs = [2.0] * 12 + [-1.0] * 18
    figures = BaselineStats.of(rs, 0.05)
    assert figures.win_rate is not None and figures.expectancy_r is not None
    assert figures.win_rate.value == pytest.approx(0.4)
    assert (figures.win_rate.low, figures.win_rate.high) == pytest.approx(
        (stats.beta.ppf(0.05, 12, 19), stats.beta.ppf(0.95, 13, 18))
    )
    half = stats.t.ppf(0.95, 29) * np.std(rs, ddof=1) / math.sqrt(30)
    assert (figures.expectancy_r.low, figures.expectancy_r.high) == pytest.approx((0.2 - half, 0.2 + half))
    assert BaselineStats.of([], 0.05).text() == "0 trades"
    assert BaselineStats.of([1.0], 0.05).expectancy_r is None  # one trade has no spread to measure


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1.5, 4.0), min_size=2, max_size=300))
def test_every_interval_holds_its_figure(rs: list[float]) -> None:
    figures = BaselineStats.of(rs, 0.05)
    assert figures.win_rate is not None and 0.0 <= figures.win_rate.low <= figures.win_rate.high <= 1.0
    assert figures.expectancy_r is not None


def test_a_score_that_ranks_outcomes_has_an_edge_and_noise_has_none() -> None:
    rng = np.random.default_rng(7)
    quality = rng.uniform(40, 90, 200)
    r = (quality - 65) / 25 + rng.normal(0, 1, 200)
    edge = ScoreEdge.measure(quality.tolist(), r.tolist())
    assert edge.has_edge and edge.rho is not None and edge.rho > 0.2 and "measured edge" in edge.text()
    noise = ScoreEdge.measure(quality.tolist(), rng.normal(0, 1, 200).tolist())
    assert not noise.has_edge and noise.text().startswith("score: no measured edge")
    backwards = ScoreEdge.measure(quality.tolist(), (-r).tolist())
    assert not backwards.has_edge  # a score that ranks the wrong way round is no edge either
    few = ScoreEdge.measure([50.0] * (MIN_SCORE_TRADES - 1), [1.0] * (MIN_SCORE_TRADES - 1))
    assert few.rho is None and "not measured" in few.text()
    assert ScoreEdge.from_json(edge.to_json()) == edge


def test_gate_failure_reasons_show_a_figure_that_differs_from_its_limit() -> None:
    oos = TradeStats(
        trades=40,
        wins=16,
        losses=24,
        win_rate=0.4,
        profit_factor=1.197,
        expectancy_r=0.1,
        average_win_r=None,
        average_loss_r=None,
        sharpe=0.4,
        total_r=4.0,
    )
    reasons = GateCriteria().failures(oos, sharpe=0.499, drawdown=0.2503, win_rate_ratio=0.846)

    assert reasons == [
        "out-of-sample profit factor 1.197 < 1.2",
        "Sharpe 0.499 < 0.5",
        "max drawdown 25.03% > 25%",
        "out-of-sample win rate is 84.6% of in-sample (< 85%)",
    ]


def test_the_code_version_hashes_every_engine_module_the_backtest_decides_trades_with() -> None:
    seen, todo = set(), ["engine.backtest"]
    while todo:  # the engine modules engine.backtest imports, however indirectly
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                todo += [node.module] if node.module.split(".")[0] == "engine" else []
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.split(".")[0] == "engine"]
    assert seen - set(TRADE_PATH) == set(MEASURING), "a module that decides trades is missing from TRADE_PATH"
