"""Learned component weights are fitted on earlier outcomes and adopted only when they rank later ones better."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from engine.learning import Outcome, OutcomeSource
from engine.quality import DEFAULT_WEIGHTS
from engine.score_weights import WeightsComparison, compare_weights, fit_weights, learned_score, nnls, row_ranks

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HAND = {name.value: weight for name, weight in DEFAULT_WEIGHTS.items()}


def outcomes(n: int, seed: int, *, informative: bool, strategy: str = "trend_pullback") -> list[Outcome]:
    """Outcomes one hour apart whose R depends on level_room (or on nothing), scored with the hand weights."""
    rng = np.random.default_rng(seed)
    made = []
    for k in range(n):
        components = {
            "trend_alignment": float(rng.choice([0.0, 0.5, 1.0])),
            "momentum": float(rng.uniform()),
            "level_room": float(rng.uniform()),
            "reward_risk": 2 / 3,  # the same on every setup: it ranks nothing
        }
        r = (4.0 * components["level_room"] - 2.0 if informative else 0.0) + float(rng.normal(0, 1.2))
        quality = learned_score(components, HAND)
        made.append(
            Outcome(strategy, "EURUSD", T0 + timedelta(hours=k), 10, r, quality, components, OutcomeSource.BACKTEST)
        )
    return made


def test_a_predictive_component_is_found_and_the_learned_weights_are_adopted() -> None:
    compared = compare_weights(outcomes(400, 1, informative=True), "trend_pullback")
    assert isinstance(compared, WeightsComparison)
    assert max(compared.weights, key=compared.weights.__getitem__) == "level_room"
    assert compared.weights["level_room"] == 1.0 and "reward_risk" not in compared.weights
    assert (compared.fit_n, compared.test_n) == (280, 120) and compared.fit_end < compared.test_start
    assert compared.learned.has_edge and compared.p_better is not None and compared.p_better < 0.05
    assert compared.adopted and "adopted for ranking" in compared.verdict()
    better, worse = {"level_room": 0.9, "momentum": 0.1}, {"level_room": 0.1, "momentum": 0.9}
    assert compared.score(better) > compared.score(worse)  # type: ignore[operator]
    assert WeightsComparison.from_json(compared.to_json()) == compared


def test_noise_is_never_adopted_and_the_report_says_the_hand_weights_stay() -> None:
    adopted = 0
    for seed in range(20):
        compared = compare_weights(outcomes(300, 100 + seed, informative=False), "trend_pullback")
        assert isinstance(compared, WeightsComparison)
        adopted += compared.adopted
        if not compared.adopted:
            assert "the hand weights stay" in compared.verdict() and compared.score({"momentum": 1.0}) is None
    assert adopted <= 1  # both tests at 5 %: chance adopts noise in far fewer than 1 of 20 samples


def test_the_fit_never_sees_the_held_out_outcomes() -> None:
    early = outcomes(280, 3, informative=True)
    late = [
        Outcome(o.strategy, o.symbol, o.closed_at + timedelta(days=365), 10, -o.r, o.quality, o.components, o.source)
        for o in outcomes(120, 4, informative=True)
    ]
    compared = compare_weights(early + late, "trend_pullback")
    assert isinstance(compared, WeightsComparison)
    assert compared.weights == fit_weights(early)  # the later outcomes (which reverse the relation) played no part
    assert not compared.adopted  # and on them the learned weights rank worse: not adopted


def test_too_few_outcomes_or_another_strategy_give_the_reason() -> None:
    assert compare_weights(outcomes(99, 5, informative=True), "trend_pullback") == (
        "trend_pullback: 99 scored outcomes; at least 100 are needed to fit and test score weights"
    )
    assert "0 scored outcomes" in str(compare_weights(outcomes(200, 6, informative=True), "pattern_reversal"))


def test_the_learned_score_is_the_quality_formula_with_other_weights() -> None:
    assert learned_score({"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 1.0}) == 50.0
    assert learned_score({"a": 1.0, "c": 0.2}, {"a": 0.5, "b": 1.0}) == 100.0  # only weighted components present
    assert learned_score({"c": 0.2}, {"a": 1.0}) is None
    assert learned_score({"a": 0.25}, {"a": 1.0}) == pytest.approx(25.0)


def test_nnls_finds_what_scipy_finds_on_random_and_collinear_problems() -> None:
    nnls_scipy = pytest.importorskip("scipy.optimize").nnls
    rng = np.random.default_rng(7)
    for k in range(600):
        m, n = int(rng.integers(1, 200)), int(rng.integers(1, 9))
        a = rng.normal(size=(m, n)) if k % 3 else rng.random((m, n)).round(1)  # rounded: ties and repeated rows
        if k % 5 == 0 and n > 1:
            a[:, 1] = 2 * a[:, 0]  # collinear columns
        b = rng.normal(size=m)
        a, b = a - a.mean(axis=0), b - b.mean()  # centred, as the fit is (a few rows: an exact fit)
        expected, _ = nnls_scipy(a, b)
        found = nnls(a, b)
        assert (found >= 0).all()
        np.testing.assert_allclose(found, expected, rtol=1e-9, atol=1e-9)
    example = np.array([[1.0, 0], [1, 0], [0, 1]])  # scipy's documented examples
    np.testing.assert_allclose(nnls(example, np.array([2.0, 1, 1])), [1.5, 1.0], rtol=1e-12)
    assert nnls(example, np.array([-1.0, -1, -1])).tolist() == [0.0, 0.0]


def test_nnls_refuses_what_it_cannot_solve() -> None:
    with pytest.raises(ValueError, match="finite"):
        nnls(np.array([[1.0, np.nan]]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"\(m, n\) matrix and an m-vector"):
        nnls(np.ones((3, 2)), np.ones(2))


def test_row_ranks_are_scipys_average_ranks_with_ties() -> None:
    rankdata = pytest.importorskip("scipy.stats").rankdata
    rng = np.random.default_rng(3)
    for k in range(200):
        rows, n = int(rng.integers(1, 40)), int(rng.integers(1, 50))
        values = rng.normal(size=(rows, n)) if k % 2 else rng.integers(0, 4, size=(rows, n)).astype(float)
        assert np.array_equal(row_ranks(values), rankdata(values, axis=1))
    assert row_ranks(np.array([[3.0, 1.0, 3.0, 2.0, 3.0]])).tolist() == [[4.0, 1.0, 4.0, 2.0, 4.0]]


def test_comparing_weights_loads_no_scipy() -> None:
    """`tradebot validate` compares the weights in its own process: scipy took a second of it to import."""
    script = (
        "import sys\n"
        "from tests.unit.test_score_weights import outcomes\n"
        "from engine.score_weights import compare_weights\n"
        "assert compare_weights(outcomes(300, 1, informative=True), 'trend_pullback').weights\n"
        "print(sorted(m for m in ('scipy', 'sklearn') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("n", [280, 999, 1755])
def test_a_component_equal_on_every_outcome_gets_no_weight_whatever_its_rounding(n: int) -> None:
    """0.6667 on every outcome has a standard deviation above 0 in floats, so it was kept as a column of rounding
    noise, and a solver could weigh the noise (scipy gave 0.86 on 1,755 real outcomes, read as the top weight 1.0):
    it is left out by its spread, and the fit agrees with scipy's on the components that vary."""
    assert float(np.std(np.full(n, 0.6667))) > 0  # the rounding this guards against
    made = outcomes(n, 5, informative=True)
    fit = [replace(o, components={**o.components, "reward_risk": 0.6667}) for o in made]
    weights = fit_weights(fit)
    assert "reward_risk" not in weights and weights["level_room"] == 1.0
    nnls_scipy = pytest.importorskip("scipy.optimize").nnls
    names = ["level_room", "momentum", "trend_alignment"]
    x = np.array([[o.components[c] for c in names] for o in fit])
    y = np.array([o.r for o in fit])
    w, _ = nnls_scipy(x - x.mean(axis=0), y - y.mean())
    assert weights == {c: round(float(v) / float(w.max()), 4) for c, v in zip(names, w, strict=True) if v > 0}
