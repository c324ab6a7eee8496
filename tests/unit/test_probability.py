"""engine.probability computes what the scipy functions it stands in for compute, to within float rounding."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import stats

from engine import drift, probability

REL = 1e-9  # scipy's own rounding differs from these in the last 11-12 digits at worst over these grids
SHAPES = (0.5, 1.0, 1.5, 2.0, 3.7, 10.0, 50.0, 200.0, 1000.0, 5000.0, 20000.0)
QUANTILES = (1e-6, 0.001, 0.05, 0.3, 0.5, 0.7, 0.95, 0.999)


@pytest.mark.parametrize("a", SHAPES)
def test_beta_quantiles_and_cdf_match_scipy(a: float) -> None:
    for b in (0.5, 1.0, 2.0, 7.0, 30.0, 400.0, 3000.0, 20000.0):
        for q in QUANTILES:
            x = probability.beta_ppf(q, a, b)
            assert x == pytest.approx(float(stats.beta.ppf(q, a, b)), rel=REL), (q, a, b)
            assert probability.beta_cdf(x, a, b) == pytest.approx(float(stats.beta.cdf(x, a, b)), rel=REL, abs=1e-300)


def test_beta_quantiles_at_the_ends_and_bad_shapes() -> None:
    assert probability.beta_ppf(0.0, 3.0, 4.0) == 0.0 and probability.beta_ppf(1.0, 3.0, 4.0) == 1.0
    assert probability.beta_cdf(-0.1, 2.0, 2.0) == 0.0 and probability.beta_cdf(1.5, 2.0, 2.0) == 1.0
    with pytest.raises(ValueError, match=r"a beta distribution needs positive finite shapes, had a=0.0, b=1.0"):
        probability.beta_ppf(0.5, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"a quantile's probability must be within 0..1, was 1.5"):
        probability.beta_ppf(1.5, 1.0, 1.0)


@pytest.mark.parametrize("df", [1, 2, 3, 5, 9, 29, 100, 999, 5000, 100000])
def test_student_t_quantiles_match_scipy(df: int) -> None:
    for q in (0.001, 0.05, 0.25, 0.75, 0.95, 0.975, 0.999):
        assert probability.student_t_ppf(q, df) == pytest.approx(float(stats.t.ppf(q, df)), rel=REL), (q, df)
    assert probability.student_t_ppf(0.5, df) == 0.0


def test_student_t_refuses_what_has_no_quantile() -> None:
    with pytest.raises(ValueError, match="degrees of freedom must be positive, was 0"):
        probability.student_t_ppf(0.9, 0)
    with pytest.raises(ValueError, match=r"strictly within 0..1, was 1.0"):
        probability.student_t_ppf(1.0, 5)


def test_normal_cdf_matches_scipy() -> None:
    for z in np.linspace(-9.0, 9.0, 181):
        assert probability.normal_cdf(float(z)) == pytest.approx(float(stats.norm.cdf(z)), rel=1e-12)


@pytest.mark.parametrize("n", [1, 5, 20, 100, 1000, 4000])
def test_binomial_cdf_and_test_match_scipy(n: int) -> None:
    for p in (0.02, 0.05, 0.3, 0.5, 0.98):
        for k in range(-1, n + 2, max(1, n // 50)):
            expected = float(stats.binom.cdf(k, n, p))
            assert probability.binomial_cdf(k, n, p) == pytest.approx(expected, rel=REL, abs=1e-290), (k, n, p)
            if 0 <= k <= n:
                test = stats.binomtest(k, n, p, alternative="less").pvalue
                assert probability.binomial_less_p(k, n, p) == pytest.approx(test, rel=REL, abs=1e-290)
    with pytest.raises(ValueError, match=r"wins must be within 0..trades, were 6 of 5"):
        probability.binomial_less_p(6, 5, 0.5)


def _scipy_ks(live: list[float], base: list[float]) -> tuple[float, float]:
    with warnings.catch_warnings():  # scipy warns when it gives up the exact count: that is what is compared
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ks_2samp(live, base, alternative="greater")
    return float(result.statistic), float(result.pvalue)


@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "tied"])
def test_one_sided_ks_matches_scipy_on_random_samples(ties: bool) -> None:
    rng = np.random.default_rng(23 + ties)
    for _ in range(120):
        n1, n2 = int(rng.integers(1, 120)), int(rng.integers(1, 900))
        places = 1 if ties else 8
        live = np.round(rng.normal(0.0, 1.0, n1), places).tolist()
        base = np.round(rng.normal(0.2, 1.2, n2), places).tolist()
        d, p = probability.ks_greater(live, base)
        expected_d, expected_p = _scipy_ks(live, base)
        assert d == expected_d, (n1, n2)
        assert p == pytest.approx(expected_p, rel=REL, abs=1e-250), (n1, n2)


def test_one_sided_ks_equal_sizes_identical_and_separated_samples() -> None:
    rng = np.random.default_rng(5)
    live, base = rng.normal(-0.3, 1.0, 40).tolist(), rng.normal(0.0, 1.0, 40).tolist()
    assert probability.ks_greater(live, base) == pytest.approx(_scipy_ks(live, base), rel=REL)
    assert probability.ks_greater(base, base) == (0.0, 1.0)
    assert probability.ks_greater([-1.0] * 25, [1.0] * 50) == pytest.approx(_scipy_ks([-1.0] * 25, [1.0] * 50))
    with pytest.raises(ValueError, match="the KS test needs values on both sides, had 0 live and 3 baseline"):
        probability.ks_greater([], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("simulations", [100, 1000, 4000])
def test_the_detectors_allowed_alarms_match_scipys_binomial(simulations: int) -> None:
    counts = np.arange(simulations + 1)
    for false_alarm in (0.01, 0.05, 0.1):
        for confidence in (0.5, 0.9, 0.95, 0.99):
            within = stats.binom.cdf(counts, simulations, false_alarm) <= 1.0 - confidence
            if not within[0]:
                continue
            expected = int(np.flatnonzero(within)[-1])
            assert drift._allowed_alarms(simulations, false_alarm, confidence) == expected


def test_the_bot_side_statistics_and_the_score_edge_do_not_import_scipy() -> None:
    code = (
        "import sys\n"
        "from engine import drift, learning, systems\n"
        "systems.BaselineStats.of([1.0, -1.0, 0.5, 2.0, -1.0], 0.05)\n"
        "drift.assess([-1.0, 1.0] * 20, [1.0, -1.0, 2.0] * 30)\n"
        "assert systems.ScoreEdge.measure([float(q % 7) for q in range(60)], [q / 9 - 3 for q in range(60)]).rho\n"
        "learning.Posterior('trend', 'EURUSD', None, 'test', 30.0, 0.5, 0.2, 12, 9.5, 20, 17, 0.1, 0.2).describe()\n"
        "assert 'scipy' not in sys.modules, 'scipy was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("df", [1, 2, 3, 8, 30, 118, 1000, 20000])
def test_student_t_upper_tail_matches_scipy(df: int) -> None:
    for t in (-40.0, -5.0, -1.3, -1e-9, 0.0, 1e-9, 0.4, 1.96, 3.0, 8.0, 40.0, 300.0):
        assert probability.student_t_sf(t, df) == pytest.approx(float(stats.t.sf(t, df)), rel=REL, abs=1e-300), (t, df)
    assert probability.student_t_sf(math.inf, df) == 0.0 and probability.student_t_sf(-math.inf, df) == 1.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        probability.student_t_sf(1.0, 0.0)


@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "tied"])
@pytest.mark.parametrize("n", [3, 4, 10, 30, 200, 2000])
def test_spearman_greater_matches_scipy_on_random_samples(n: int, ties: bool) -> None:
    rng = np.random.default_rng(n * 2 + ties)
    for trial in range(20):
        score = rng.normal(size=n) + (trial % 5 - 2) * 0.2 * np.arange(n) / n  # some with a real association
        r = np.round(rng.normal(size=n) + score * (trial % 3) * 0.3, 1 if ties else 12)
        if ties:
            score = np.round(score, 1)
        if len(set(score)) < 2 or len(set(r)) < 2:
            continue
        expected = stats.spearmanr(score, r, alternative="greater")
        rho, p = probability.spearman_greater(score.tolist(), r.tolist())
        assert rho == pytest.approx(float(expected.statistic), rel=1e-12, abs=1e-14), (n, trial)
        assert p == pytest.approx(float(expected.pvalue), rel=REL, abs=1e-15), (n, trial)
    assert probability.average_ranks([3.0, 1.0, 3.0, 2.0, 3.0]) == stats.rankdata([3, 1, 3, 2, 3]).tolist()


def test_spearman_greater_at_its_edges_as_scipy() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on a constant input and on a perfect correlation's t
        for x, y in (
            ([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0]),  # perfectly increasing: p 0
            ([1.0, 2.0, 3.0, 4.0], [9.0, 6.0, 4.0, 2.0]),  # perfectly decreasing: p 1
            ([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]),  # the smallest sample
        ):
            expected = stats.spearmanr(x, y, alternative="greater")
            rho, p = probability.spearman_greater(x, y)
            assert (rho, p) == pytest.approx((float(expected.statistic), float(expected.pvalue)), rel=REL, abs=1e-15)
        for x, y in (([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]), ([1.0, math.nan, 2.0], [1.0, 2.0, 3.0])):
            rho, p = probability.spearman_greater(x, y)
            assert math.isnan(rho) and math.isnan(p)
            assert math.isnan(stats.spearmanr(x, y, alternative="greater").pvalue)
    with pytest.raises(ValueError, match="at least 3"):
        probability.spearman_greater([1.0, 2.0], [1.0, 2.0])
