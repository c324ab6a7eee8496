"""Monte Carlo over trade R multiples: hand-checked distributions, determinism, ruin and speed."""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter

import numpy as np
import pytest

from engine.montecarlo import (
    MonteCarloReport,
    Percentiles,
    Resampling,
    equity_curve,
    max_drawdown,
    monte_carlo,
    simulate_runs,
)

SHUFFLE, BOOTSTRAP = Resampling.SHUFFLE, Resampling.BOOTSTRAP
THREE_LOSSES_ONE_WIN = [-1.0, -1.0, -1.0, 3.0]
# At 1% risk: a loss multiplies equity by 0.99, the +3R win by 1.03.
FINAL = 0.99**3 * 1.03 - 1  # -0.00059203, whatever the order
DD_TWO, DD_THREE = 1 - 0.99**2, 1 - 0.99**3  # 0.0199 and 0.029701


def test_shuffle_keeps_the_final_return_and_varies_drawdown_and_streaks_by_hand() -> None:
    runs = simulate_runs(THREE_LOSSES_ONE_WIN, runs=2000, method=SHUFFLE, seed=1)
    np.testing.assert_allclose(runs.final_return, FINAL, rtol=0, atol=1e-12)
    # The win's position decides everything: W L L L and L L L W lose three in a row (drawdown 1 - 0.99^3);
    # L W L L and L L W L never lose more than two in a row from a peak (1 - 0.99^2). Each half the time.
    three_in_a_row = np.isclose(runs.max_drawdown, DD_THREE, rtol=0, atol=1e-12)
    assert np.all(three_in_a_row | np.isclose(runs.max_drawdown, DD_TWO, rtol=0, atol=1e-12))
    assert np.array_equal(runs.longest_losing_streak, np.where(three_in_a_row, 3, 2))
    assert 0.45 < np.mean(three_in_a_row) < 0.55  # binomial(2000, 1/2): 4.5 standard deviations either side

    report = monte_carlo(THREE_LOSSES_ONE_WIN, runs=2000, method=SHUFFLE, seed=1)
    assert report.final_return is not None and report.max_drawdown is not None
    assert report.final_return.p5 == pytest.approx(FINAL, abs=1e-12)
    assert report.final_return.p95 == pytest.approx(FINAL, abs=1e-12)
    assert report.max_drawdown.p5 == pytest.approx(DD_TWO) and report.max_drawdown.p95 == pytest.approx(DD_THREE)
    assert report.longest_losing_streak == Percentiles(2.0, 2.0, report.longest_losing_streak.p50, 3.0, 3.0)  # type: ignore[union-attr]
    assert report.ruin_probability == 0.0


def test_shuffle_drawdown_distribution_matches_exact_enumeration() -> None:
    trades = [2.0, -1.0, -1.0, 0.5, -1.0, -1.0, 1.0]
    exact = Counter(round(max_drawdown(equity_curve(p, 0.02)), 9) for p in itertools.permutations(trades))
    total = sum(exact.values())
    runs = simulate_runs(trades, runs=20_000, method=SHUFFLE, risk_fraction=0.02, seed=3)
    simulated = Counter(round(float(dd), 9) for dd in runs.max_drawdown)
    assert set(simulated) <= set(exact)
    for value, count in exact.items():
        p = count / total
        sd = math.sqrt(p * (1 - p) / 20_000)
        assert abs(simulated[value] / 20_000 - p) < 5 * sd + 1e-9, value


def test_bootstrap_draws_the_given_trades_with_replacement_by_hand() -> None:
    # Two trades drawn from {-1R, +3R}: both losses 1/4, one of each 1/2, both wins 1/4.
    runs = simulate_runs([-1.0, 3.0], runs=4000, method=BOOTSTRAP, seed=5)
    outcomes = {round(0.99**2 - 1, 9): 0.25, round(0.99 * 1.03 - 1, 9): 0.5, round(1.03**2 - 1, 9): 0.25}
    seen = Counter(round(float(f), 9) for f in runs.final_return)
    assert set(seen) == set(outcomes)
    for value, p in outcomes.items():
        assert abs(seen[value] / 4000 - p) < 5 * math.sqrt(p * (1 - p) / 4000)


def test_bootstrap_is_deterministic_by_seed() -> None:
    trades = np.random.default_rng(0).normal(0.2, 1.2, 300)
    first = monte_carlo(trades, method=BOOTSTRAP, seed=11)
    assert monte_carlo(trades, method=BOOTSTRAP, seed=11) == first
    assert monte_carlo(trades, method=BOOTSTRAP, seed=12) != first
    a = simulate_runs(trades, runs=200, method=BOOTSTRAP, seed=11)
    b = simulate_runs(trades, runs=200, method=BOOTSTRAP, seed=11)
    assert np.array_equal(a.final_return, b.final_return) and np.array_equal(a.max_drawdown, b.max_drawdown)


def test_all_wins_never_draw_down_nor_ruin() -> None:
    for method in Resampling:
        report = monte_carlo([0.5, 2.0, 1.0, 0.05], method=method, ruin_drawdown=0.01)
        assert report.max_drawdown == Percentiles(0.0, 0.0, 0.0, 0.0, 0.0)
        assert report.longest_losing_streak == Percentiles(0.0, 0.0, 0.0, 0.0, 0.0)
        assert report.ruin_probability == 0.0


def ruin(report: MonteCarloReport) -> float:
    assert report.ruin_probability is not None
    return report.ruin_probability


def test_ruin_by_hand_and_monotone_in_the_ruin_level() -> None:
    # Fifty straight 1R losses at 1%: equity 0.99^50 = 0.605, a 39.5 % drawdown in every run.
    assert monte_carlo([-1.0] * 50, ruin_drawdown=0.39).ruin_probability == 1.0
    assert monte_carlo([-1.0] * 50, ruin_drawdown=0.40).ruin_probability == 0.0
    trades = np.random.default_rng(2).normal(0.05, 1.0, 400)
    levels = [0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0]
    for method in Resampling:
        probabilities = [
            ruin(monte_carlo(trades, method=method, risk_fraction=0.02, ruin_drawdown=level, seed=4))
            for level in levels
        ]
        assert probabilities == sorted(probabilities, reverse=True), method
        assert probabilities[0] == 1.0 and probabilities[-1] == 0.0  # some fall, none loses everything
        assert 0.0 < probabilities[3] < 1.0


def test_scratch_trades_are_not_losses_and_end_a_streak() -> None:
    # -0.04R is inside the breakeven band: -1, -0.04, -1 has a longest streak of 1 or 2 by its order.
    runs = simulate_runs([-1.0, -0.04, -1.0], runs=600, seed=0)
    assert Counter(runs.longest_losing_streak.tolist()).keys() == {1, 2}
    assert simulate_runs([-0.05, -0.05], runs=3).longest_losing_streak.tolist() == [2, 2, 2]  # on the edge: a loss


def test_zero_trades_give_an_empty_report_without_numbers() -> None:
    report = monte_carlo([])
    assert report.is_empty and report.trades == 0
    assert (report.max_drawdown, report.final_return, report.longest_losing_streak, report.ruin_probability) == (
        None,
        None,
        None,
        None,
    )
    with pytest.raises(ValueError, match="a report over zero trades must not carry statistics"):
        MonteCarloReport(SHUFFLE, 10, 0, 0.01, 0.3, 0, None, None, None, 0.0)


def test_many_trades_are_simulated_in_chunks_with_the_same_invariants() -> None:
    trades = np.random.default_rng(9).normal(0.1, 1.0, 5000)  # 1000 x 5000 cells: three chunks of runs
    runs = simulate_runs(trades, runs=1000, seed=9)
    assert len(runs) == 1000
    np.testing.assert_allclose(runs.final_return, equity_curve(trades, 0.01)[-1] - 1, rtol=1e-9)
    assert len(np.unique(runs.max_drawdown)) > 900  # every chunk was shuffled differently


def test_percentiles_are_outcomes_that_occurred() -> None:
    assert Percentiles.of(np.arange(1, 101)) == Percentiles(5.0, 25.0, 50.0, 75.0, 95.0)
    assert Percentiles.of(np.array([3, 1, 2])) == Percentiles(1.0, 1.0, 2.0, 3.0, 3.0)
    with pytest.raises(ValueError, match="must not decrease from p5 to p95"):
        Percentiles(1.0, 0.5, 1.0, 1.0, 1.0)


def test_equity_curve_and_drawdown_by_hand() -> None:
    np.testing.assert_allclose(equity_curve([1.0, -2.0, 3.0], 0.1), [1.0, 1.1, 0.88, 1.144])
    assert max_drawdown([1.0, 1.1, 0.88, 1.144]) == pytest.approx(0.2)
    assert max_drawdown([1.0, 0.9]) == pytest.approx(0.1)  # the start is the first peak
    assert max_drawdown([]) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runs": 0}, "runs must be a whole number of at least 1"),
        ({"risk_fraction": 0.0}, r"risk_fraction must be within \(0, 1\]"),
        ({"ruin_drawdown": 1.5}, r"ruin_drawdown must be within \(0, 1\]"),
        ({"r_multiples": [1.0, math.nan]}, "r_multiples must all be finite numbers"),
        ({"r_multiples": [-150.0]}, "would lose more than the whole equity"),
        ({"method": "jackknife"}, "'jackknife' is not a valid Resampling"),
    ],
)
def test_impossible_inputs_are_rejected(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"r_multiples": [1.0, -1.0], **kwargs}
    with pytest.raises(ValueError, match=message):
        monte_carlo(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", list(Resampling))
def test_a_thousand_runs_of_a_thousand_trades_take_well_under_100_ms(method: Resampling) -> None:
    trades = np.random.default_rng(1).normal(0.1, 1.5, 1000)
    monte_carlo(trades, method=method)  # warm up numpy's code paths
    best = math.inf
    for _ in range(3):
        started = time.process_time()  # CPU time of this process: robust to other load on the machine
        monte_carlo(trades, runs=1000, method=method)
        best = min(best, time.process_time() - started)
    assert best < 0.1, f"{best * 1000:.0f} ms"
