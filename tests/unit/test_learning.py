"""Learning core: posteriors, demotion, ranking, score calibration and the trader's edge, on known numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import norm, ttest_1samp
from sklearn.isotonic import IsotonicRegression

from engine.calibration import CalibrationModel, _paired_p_value, fit_calibration, isotonic_thresholds
from engine.domain import Interval, QualityScore, ScoreComponent, Setup, Side
from engine.learning import (
    CalibrationMethod,
    LearningConfig,
    Outcome,
    OutcomeSource,
    Posterior,
    Verdict,
    bucket_key,
    demotion,
    posterior_for,
    posteriors,
    rank_key,
    recency_weight,
    trader_edge,
)
from engine.results import BacktestTrade
from engine.trading import ExitReason, Trade, TradeKind

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
T0 = datetime(2020, 1, 1, tzinfo=UTC)
PAIR = ("trend_pullback", "EURUSD")
CFG = LearningConfig()


def outcome(
    r: float,
    *,
    at: datetime = NOW,
    source: OutcomeSource = OutcomeSource.LIVE,
    hour: int = 9,
    quality: float | None = None,
    components: dict[str, float] | None = None,
    pair: tuple[str, str] = PAIR,
) -> Outcome:
    return Outcome(pair[0], pair[1], at, hour, r, quality, components or {}, source)


def bernoulli_stream(p: float, n: int, seed: int, *, spacing: timedelta = timedelta(hours=1)) -> list[Outcome]:
    """`n` outcomes of +1R (won with probability `p`) or -1R, the last one closing at NOW."""
    won = np.random.default_rng(seed).random(n) < p
    return [outcome(1.0 if w else -1.0, at=NOW - (n - 1 - i) * spacing) for i, w in enumerate(won)]


def scored_stream(
    n: int, seed: int, *, informative: bool = True, components: bool = False, win: float = 0.45
) -> list[Outcome]:
    """Scored backtest outcomes an hour apart; the win probability is quality/100 * 0.8 + 0.1 when informative."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.0, 100.0, n).round(1)
    p = q / 100 * 0.8 + 0.1 if informative else np.full(n, win)
    won = rng.random(n) < p
    noise = rng.uniform(0.0, 1.0, n)
    return [
        outcome(
            1.0 if won[i] else -1.0,
            at=T0 + timedelta(hours=i),
            source=OutcomeSource.BACKTEST,
            quality=float(q[i]),
            components={"momentum": float(q[i] / 100), "level_room": float(noise[i])} if components else {},
        )
        for i in range(n)
    ]


def truth(q: float) -> float:
    return q / 100 * 0.8 + 0.1


# --- outcomes ------------------------------------------------------------------------------------------


def test_won_uses_the_breakeven_band() -> None:
    assert outcome(0.05).won and outcome(2.0).won
    assert not outcome(0.04).won and not outcome(-1.0).won


def test_from_backtest_takes_the_exit_time_r_hour_and_score() -> None:
    at = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    setup = Setup("s", "AAA", Side.LONG, Decimal(100), Decimal(95), (Decimal(110),), at, Interval.H1)
    trade = Trade(
        trade_id=setup.signal_id,
        signal_id=setup.signal_id,
        kind=TradeKind.BACKTEST,
        strategy="s",
        symbol="AAA",
        side=Side.LONG,
        quantity=Decimal(10),
        contract_size=Decimal(1),
        entry_time=at + timedelta(hours=1),
        entry_price=Decimal(100),
        stop=Decimal(95),
        target=Decimal(110),
        exit_time=at + timedelta(hours=3),
        exit_price=Decimal(110),
        exit_reason=ExitReason.TARGET,
    )
    score = QualityScore(
        62.5, (ScoreComponent("momentum", 0.75, 1.0, "m"), ScoreComponent("level_room", 0.5, 1.0, "l"))
    )
    o = Outcome.from_backtest(BacktestTrade(trade, setup, score, 0, 1, 2, 10, 0))
    assert (o.strategy, o.symbol, o.closed_at, o.entry_hour) == ("s", "AAA", at + timedelta(hours=3), 10)
    assert o.r == 2.0 and o.won and o.source is OutcomeSource.BACKTEST
    assert o.quality == 62.5 and dict(o.components) == {"momentum": 0.75, "level_room": 0.5}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hour": 24}, "entry_hour must be an hour 0..23"),
        ({"quality": 100.5}, "quality must be within 0..100"),
        ({"components": {"momentum": 1.5}}, "component momentum must be within 0..1"),
        ({"at": datetime(2025, 1, 1)}, "timezone-aware UTC"),
    ],
)
def test_outcome_invariants(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        outcome(1.0, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="R must be finite"):
        outcome(math.nan)


# --- config --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prior_trades": 0.0}, "prior_trades must be a positive"),
        ({"half_life_days": -1.0}, "half_life_days must be a positive"),
        ({"demote_confidence": 0.4}, r"demote_confidence must be within \[0.5, 1\)"),
        ({"demote_confidence": 1.0}, r"demote_confidence must be within \[0.5, 1\)"),
        ({"min_live_for_demotion": 0}, "min_live_for_demotion must be a whole number of at least 1"),
        ({"min_bucket_trades": 2.5}, "min_bucket_trades must be a whole number"),
        ({"holdout_fraction": 1.0}, r"holdout_fraction must be within \(0, 1\)"),
        ({"min_calibration_trades": 5}, "min_calibration_trades must be a whole number >= 10"),
        ({"method": "isotonic"}, "method must be a CalibrationMethod"),
    ],
)
def test_invalid_config_is_refused_with_the_rule(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LearningConfig(**kwargs)  # type: ignore[arg-type]


# --- posteriors ----------------------------------------------------------------------------------------


def test_p_win_converges_to_the_true_rate_and_the_prior_counts_at_most_prior_trades() -> None:
    baseline = [1.0] * 150 + [-1.0] * 350  # 30 % winners, 500 trades: discounted to 20 pseudo-trades
    live = bernoulli_stream(0.6, 2_000, seed=1, spacing=timedelta(minutes=10))  # 2,000 in ~14 days
    p = posteriors({PAIR: baseline}, live, NOW, CFG)[PAIR]
    assert p.prior_n == 20.0
    assert p.prior == "baseline (500 trades, discounted to 20)"
    assert p.win_alpha + p.win_beta == pytest.approx(2 + 20 + p.live_weight)
    assert p.live_n == 2_000 and 1_800 < p.live_weight < 2_000
    assert abs(p.p_win - 0.6) < 0.03
    low, high = p.p_win_interval
    assert low < p.p_win < high and high - low < 0.04


def test_without_live_outcomes_the_posterior_is_the_discounted_baseline() -> None:
    baseline = [2.0] * 30 + [-1.0] * 70  # win rate 0.3, mean -0.1R, population variance 0.3 x 0.7 x 3^2 = 1.89
    p = posteriors({PAIR: baseline}, [], NOW, CFG)[PAIR]
    assert (p.win_alpha, p.win_beta) == pytest.approx((1 + 20 * 0.3, 1 + 20 * 0.7))
    assert p.expected_r == pytest.approx(-0.1)
    assert p.expected_r_sd == pytest.approx(math.sqrt(1.89 / 20))
    small = posteriors({PAIR: baseline[:12]}, [], NOW, CFG)[PAIR]  # 12 < 20: counts as what it is
    assert small.prior_n == 12 and small.prior == "baseline (12 trades)"


def test_recency_weight_halves_every_half_life() -> None:
    assert recency_weight(NOW, NOW, 90.0) == 1.0
    assert recency_weight(NOW - timedelta(days=90), NOW, 90.0) == 0.5
    assert recency_weight(NOW - timedelta(days=180), NOW, 90.0) == 0.25
    assert recency_weight(NOW + timedelta(days=3), NOW, 90.0) == 1.0  # closed after `now`: not upweighted


def test_recent_degraded_outcomes_move_the_posterior_more_than_old_ones() -> None:
    baseline = [1.0] * 12 + [-1.0] * 8  # 20 trades at 60 %: alpha0 13, beta0 9
    recent = [outcome(-1.0, at=NOW) for _ in range(20)]
    old = [outcome(-1.0, at=NOW - timedelta(days=180)) for _ in range(20)]  # weight 0.25 each
    p_recent = posteriors({PAIR: baseline}, recent, NOW, CFG)[PAIR]
    p_old = posteriors({PAIR: baseline}, old, NOW, CFG)[PAIR]
    assert p_recent.p_win == pytest.approx(13 / (13 + 9 + 20))
    assert p_old.p_win == pytest.approx(13 / (13 + 9 + 5))
    assert p_old.live_weight == pytest.approx(5.0)
    assert p_recent.expected_r < p_old.expected_r < 0.2  # the baseline's mean is +0.2R


def test_expected_r_and_p_negative_by_hand() -> None:
    baseline = [2.0, -1.0, 2.0, -1.0]  # mean 0.5, population variance 2.25, w0 = 4, win rate 0.5
    live = [outcome(-1.0, at=NOW), outcome(-1.0, at=NOW - timedelta(days=90))]  # weights 1 and 0.5
    p = posteriors({PAIR: baseline}, live, NOW, CFG)[PAIR]
    total = 4 + 1.5
    mean = (4 * 0.5 - 1.0 - 0.5) / total  # 0.0909...
    spread = 4 * (2.25 + (0.5 - mean) ** 2) + 1.5 * (-1.0 - mean) ** 2
    sd = math.sqrt(spread / total / total)
    assert p.expected_r == pytest.approx(mean) and p.expected_r == pytest.approx(1 / 11)
    assert p.expected_r_sd == pytest.approx(sd)
    assert p.p_negative == pytest.approx(norm.cdf(-mean / sd))
    assert (p.win_alpha, p.win_beta) == pytest.approx((3.0, 4.5))
    assert p.p_win == pytest.approx(0.4)
    assert (p.live_n, p.live_weight) == (2, pytest.approx(1.5))
    assert p.describe() == (
        f"trend_pullback EURUSD: win 40% ({p.p_win_interval[0]:.0%}-{p.p_win_interval[1]:.0%}), expected R +0.09 ± "
        f"{sd:.2f}, P(expected R < 0) {p.p_negative:.0%}; 2 recorded outcomes (weight 1.5); prior: baseline (4 trades)"
    )


def test_a_constant_baseline_gets_the_variance_floor() -> None:
    p = posteriors({PAIR: [1.0] * 10}, [], NOW, CFG)[PAIR]
    assert p.expected_r == 1.0
    assert p.expected_r_sd == pytest.approx(math.sqrt(0.25 / 10))
    assert p.p_negative == pytest.approx(norm.cdf(-1.0 / math.sqrt(0.025)))


def test_a_pair_without_baseline_gets_a_weak_prior() -> None:
    p = posteriors({}, [outcome(1.0)], NOW, CFG)[PAIR]
    assert p.prior == "no baseline: weak prior" and p.prior_n == 2.0
    assert (p.win_alpha, p.win_beta) == (3.0, 2.0)
    assert p.expected_r == pytest.approx(1 / 3)  # (2 x 0 + 1) / 3
    spread = 2 * (1.0 + (1 / 3) ** 2) + (2 / 3) ** 2
    assert p.expected_r_sd == pytest.approx(math.sqrt(spread / 3 / 3))


def test_shadow_live_and_external_update_but_backtest_outcomes_do_not() -> None:
    baseline = [1.0, -1.0] * 10
    recorded = [outcome(1.0, source=s) for s in (OutcomeSource.LIVE, OutcomeSource.SHADOW, OutcomeSource.EXTERNAL)]
    backtested = [outcome(-1.0, source=OutcomeSource.BACKTEST) for _ in range(5)]
    with_bt = posteriors({PAIR: baseline}, [*recorded, *backtested], NOW, CFG)
    without = posteriors({PAIR: baseline}, recorded, NOW, CFG)
    assert with_bt[PAIR] == without[PAIR]
    assert with_bt[PAIR].live_n == 3 and with_bt[PAIR].win_alpha == 1 + 10 + 3


def test_the_strategy_posterior_pools_its_pairs_and_versions_name_the_baseline() -> None:
    other = ("trend_pullback", "GBPUSD")
    baselines = {PAIR: [1.0] * 10 + [-1.0] * 10, other: [1.0] * 5, ("breakout", "SPY"): [-1.0] * 4}
    posts = posteriors(baselines, [], NOW, CFG, baseline_versions={PAIR: 3})
    overall = posts[("trend_pullback", None)]
    assert overall.symbol is None and overall.prior == "baselines of 2 symbols (25 trades, discounted to 20)"
    assert overall.prior_win_rate == pytest.approx(15 / 25)
    assert posts[PAIR].prior == "baseline v3 (20 trades)"
    assert set(posts) == {PAIR, other, ("breakout", "SPY"), ("trend_pullback", None), ("breakout", None)}


def test_hour_buckets_need_enough_outcomes_and_use_backtest_hours_as_their_prior() -> None:
    history = [outcome(1.0, source=OutcomeSource.BACKTEST, hour=9, at=T0) for _ in range(25)]
    history += [outcome(-1.0, source=OutcomeSource.BACKTEST, hour=10, at=T0) for _ in range(29)]
    live = [outcome(-1.0, hour=9) for _ in range(5)] + [outcome(-1.0, hour=14)]
    posts = posteriors({PAIR: [1.0, -1.0] * 20}, [*history, *live], NOW, CFG)
    nine = posts[("trend_pullback", bucket_key("EURUSD", 9))]
    assert bucket_key("EURUSD", 9) == "EURUSD@hour09"
    assert (nine.symbol, nine.bucket, nine.live_n) == ("EURUSD", "hour 09", 5)
    assert nine.prior == "backtest hour 09 (25 trades, discounted to 20)"
    assert (nine.win_alpha, nine.win_beta) == (21.0, 6.0)  # 1 + 20 x 1.0 wins; 1 + 0 + 5 live losses
    assert ("trend_pullback", "EURUSD@hour10") not in posts  # 29 < 30
    assert ("trend_pullback", "EURUSD@hour14") not in posts
    assert posterior_for(posts, *PAIR, hour=9) is nine
    assert posterior_for(posts, *PAIR, hour=10) is posts[PAIR]
    assert posterior_for(posts, "trend_pullback", "XAUUSD", hour=9) is None


# --- demotion and ranking ------------------------------------------------------------------------------


def _losing(n: int) -> Posterior:
    return posteriors({PAIR: [1.0, -1.0] * 10}, [outcome(-1.0) for _ in range(n)], NOW, CFG)[PAIR]


def test_demotion_needs_enough_live_outcomes_and_confidence() -> None:
    nine, ten = _losing(9), _losing(10)
    assert nine.p_negative > 0.9 and ten.p_negative > 0.9
    verdict, reason = demotion(nine, CFG)
    assert verdict is Verdict.KEEP and reason.startswith("only 9 recorded outcomes; demotion needs at least 10")
    verdict, reason = demotion(ten, CFG)
    assert verdict is Verdict.ASK_ONLY
    assert f"P(expected R < 0) = {ten.p_negative:.2f}" in reason and "after 10 recorded outcomes" in reason
    assert demotion(ten, CFG, Verdict.PAUSE)[0] is Verdict.PAUSE
    strict = LearningConfig(demote_confidence=0.9999)
    assert ten.p_negative < 0.9999
    assert demotion(ten, strict)[0] is Verdict.KEEP
    with pytest.raises(ValueError, match="ASK_ONLY or PAUSE"):
        demotion(ten, CFG, Verdict.KEEP)


def test_a_winning_pair_is_kept() -> None:
    p = posteriors({PAIR: [1.0, -1.0] * 10}, [outcome(1.0) for _ in range(30)], NOW, CFG)[PAIR]
    assert p.p_negative < 0.01
    assert demotion(p, CFG)[0] is Verdict.KEEP


def test_rank_key_orders_by_expected_r_then_quality() -> None:
    good = posteriors({PAIR: [1.0] * 10}, [], NOW, CFG)[PAIR]  # expected R +1
    bad = posteriors({PAIR: [-1.0] * 10}, [], NOW, CFG)[PAIR]  # expected R -1
    signals = [("bad", bad, 90.0), ("none-low", None, 40.0), ("good", good, 50.0), ("none-high", None, 70.0)]
    ranked = sorted(signals, key=lambda s: rank_key(s[1], s[2]))
    assert [name for name, _, _ in ranked] == ["good", "none-high", "none-low", "bad"]
    assert rank_key(None, 70.0) == (-0.0, -70.0)


# --- calibration ---------------------------------------------------------------------------------------


def _model(outcomes: Sequence[Outcome], config: LearningConfig = CFG) -> CalibrationModel:
    model = fit_calibration(outcomes, config)
    assert isinstance(model, CalibrationModel), model
    return model


def test_isotonic_recovers_a_known_win_probability_and_beats_the_base_rate() -> None:
    model = _model(scored_stream(20_000, seed=3))
    for q in (20.0, 50.0, 80.0):
        assert abs(model.predict(q, {}) - truth(q)) < 0.05, q
    assert (model.fit_n, model.test_n) == (14_000, 6_000)
    assert model.beats_base_rate and model.brier < model.brier_base and model.p_value is not None
    assert model.skill is not None and model.skill > 0.15  # true skill: 1 - 0.197 / 0.25 ≈ 0.21
    assert model.p_value is not None and model.p_value < 0.001
    assert model.estimate(80.0, {}) == model.predict(80.0, {})
    assert model.verdict().startswith("isotonic calibration beats the base rate out of sample: Brier ")
    assert "6,000 held-out trades" in model.verdict()
    assert sum(b.n for b in model.bins) == 6_000
    for b in model.bins:
        assert b.lower <= b.mean_predicted <= b.upper
        assert abs(b.observed - b.mean_predicted) < 0.1 or b.n < 50


def test_isotonic_predictions_are_what_sklearn_predicts() -> None:
    outcomes = scored_stream(1_000, seed=5)
    model = _model(outcomes)
    fit = outcomes[: model.fit_n]
    x = np.array([o.quality for o in fit], dtype=float)
    y = np.array([o.won for o in fit], dtype=float)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(x, y)
    grid = np.linspace(0, 100, 41)
    np.testing.assert_allclose([model.predict(q, {}) for q in grid], reference.predict(grid), atol=1e-12)


def test_isotonic_thresholds_interpolate_as_sklearn_on_random_samples() -> None:
    rng = np.random.default_rng(2)
    grid = np.linspace(0, 100, 201)
    for k in range(300):
        n = int(rng.integers(1, 600))
        x = rng.integers(0, 1001, size=n) / 10.0 if k % 2 else rng.random(n) * 100  # scores on 0.1 steps: ties
        y = (rng.random(n) < x / 150 + 0.1).astype(float) if k % 3 else rng.random(n)
        reference = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0, y_max=1).fit(x, y)
        x_thresholds, y_thresholds = isotonic_thresholds(x, y)
        np.testing.assert_allclose(np.interp(grid, x_thresholds, y_thresholds), reference.predict(grid), atol=1e-12)


def test_isotonic_thresholds_of_wins_and_losses_are_exact_win_rates() -> None:
    """Each fitted point is the correctly rounded win rate of its pooled block (a pooling in exact fractions)."""
    rng = np.random.default_rng(9)
    for _ in range(100):
        x = rng.integers(0, 60, size=int(rng.integers(1, 400))) / 2.0
        y = (rng.random(len(x)) < 0.2 + x / 100).astype(float)
        blocks: list[list[Fraction | int]] = []  # [wins, count, number of distinct scores]
        for value in np.unique(x):
            blocks.append([Fraction(int(y[x == value].sum())), int((x == value).sum()), 1])
            while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
                wins, count, width = blocks.pop()
                blocks[-1] = [blocks[-1][0] + wins, blocks[-1][1] + count, blocks[-1][2] + width]
        exact = [float(wins / count) for wins, count, width in blocks for _ in range(int(width))]
        x_thresholds, y_thresholds = isotonic_thresholds(x, y)
        kept = [exact[int(np.searchsorted(np.unique(x), v))] for v in x_thresholds]
        assert y_thresholds.tolist() == kept


def test_the_brier_gain_p_value_is_scipys_one_sided_t_test() -> None:
    rng = np.random.default_rng(4)
    for _ in range(200):
        gain = rng.normal(0.002, 0.05, size=int(rng.integers(2, 400)))
        expected = float(ttest_1samp(gain, 0.0, alternative="greater").pvalue)
        assert _paired_p_value(gain) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert _paired_p_value(np.array([0.1])) is None and _paired_p_value(np.full(5, 0.02)) is None
    equal = np.full(50, 0.0123 + 1e-17 * 3)  # equal gains: no variance, whatever their float deviation says
    assert _paired_p_value(equal) is None and _paired_p_value(np.full(30, 0.001)) is None


def test_a_score_without_information_does_not_beat_the_base_rate() -> None:
    # Every outcome has the same score: the mapping can only say the base rate, and ties do not beat.
    flat = [
        outcome(o.r, at=o.closed_at, source=o.source, quality=55.0)
        for o in scored_stream(500, seed=11, informative=False)
    ]
    model = _model(flat)
    assert model.brier == pytest.approx(model.brier_base) and not model.beats_base_rate
    assert model.estimate(55.0, {}) is None
    assert "does NOT beat the base rate out of sample" in model.verdict()
    assert model.verdict().endswith("no win estimate is shown")


def test_uninformative_scores_rarely_pass_the_gate_because_it_asks_for_significance() -> None:
    # With a bare "Brier lower" rule a score independent of the outcome "beat" the base rate in 8 of 40 seeds
    # (isotonic) and 17 of 40 (logistic); the gate also asks for a paired p < 0.05.
    passed = {
        method: sum(
            _model(scored_stream(3_000, seed=seed, informative=False), replace(CFG, method=method)).beats_base_rate
            for seed in range(40)
        )
        for method in (CalibrationMethod.ISOTONIC, CalibrationMethod.LOGISTIC)
    }
    assert passed[CalibrationMethod.ISOTONIC] <= 4 and passed[CalibrationMethod.LOGISTIC] <= 4, passed


def test_random_scores_independent_of_the_outcome_do_not_beat_the_base_rate() -> None:
    # A score independent of the outcome: isotonic overfits the fit part and loses out of sample with this seed.
    model = _model(scored_stream(3_000, seed=4, informative=False))
    assert not model.beats_base_rate and model.skill is not None and model.skill < 0
    assert model.estimate(90.0, {}) is None


def test_logistic_calibration_on_score_and_components() -> None:
    config = LearningConfig(method=CalibrationMethod.LOGISTIC)
    model = _model(scored_stream(4_000, seed=8, components=True), config)
    assert model.method is CalibrationMethod.LOGISTIC
    assert model.features == ("quality", "level_room", "momentum")
    assert model.beats_base_rate and model.skill is not None and model.skill > 0.15
    level_room = model.coef[1]
    assert abs(level_room) < 0.1 < model.coef[0]  # the noise component gets almost nothing
    for q in (20.0, 50.0, 80.0):
        assert abs(model.predict(q, {"momentum": q / 100, "level_room": 0.5}) - truth(q)) < 0.06, q
    # A missing component takes its training mean, i.e. contributes nothing after standardising.
    mean_room = model.means[1]
    assert model.predict(60.0, {"momentum": 0.6}) == model.predict(60.0, {"momentum": 0.6, "level_room": mean_room})


def test_a_component_equal_on_every_outcome_changes_no_logistic_estimate() -> None:
    """reward:risk 0.6667 on every setup (a fixed target) carries nothing: a setup without it, with it, or a fit
    without it at all estimate the same win probability (its float deviation, 1e-16, once scaled it to +-1)."""
    config = LearningConfig(method=CalibrationMethod.LOGISTIC)
    base = scored_stream(4_000, seed=8, components=True)
    model = _model([replace(o, components={**o.components, "reward_risk": 0.6667}) for o in base], config)
    assert model.features[-1] == "reward_risk" and model.scales[-1] == 1.0
    without = _model(base, config)
    for q in (20.0, 60.0, 90.0):
        seen = {"momentum": q / 100, "level_room": 0.5}
        given = model.predict(q, {**seen, "reward_risk": 0.6667})
        assert model.predict(q, seen) == pytest.approx(given, abs=1e-9)
        assert given == pytest.approx(without.predict(q, seen), abs=1e-3)


def test_logistic_needs_wins_and_losses_in_the_fit_part() -> None:
    outcomes = [outcome(1.0, at=T0 + timedelta(hours=i), quality=50.0) for i in range(100)]
    result = fit_calibration(outcomes, LearningConfig(method=CalibrationMethod.LOGISTIC))
    assert result == "n/a: the 70 fit outcomes are all wins; logistic needs both"


def test_the_held_out_part_is_the_latest_by_close_time_never_shuffled() -> None:
    # The first 70 hours only won and the last 30 only lost; fed in shuffled order. A fit that saw any later
    # outcome would have a base rate below 1.
    outcomes = [
        outcome(1.0 if i < 70 else -1.0, at=T0 + timedelta(hours=i), quality=float(i % 100)) for i in range(100)
    ]
    order = np.random.default_rng(2).permutation(100)
    model = _model([outcomes[i] for i in order])
    assert (model.fit_n, model.test_n) == (70, 30)
    assert model.base_rate == 1.0 and model.brier_base == 1.0 and model.brier == 1.0
    assert model.fit_end == T0 + timedelta(hours=69) < model.test_start == T0 + timedelta(hours=70)
    assert model.test_end == T0 + timedelta(hours=99)
    assert model.fitted_from == "100 live outcomes, fit 2020-01..2020-01, held out 2020-01..2020-01"


def test_outcomes_closing_together_at_the_cut_go_to_the_held_out_part() -> None:
    times = [T0 + timedelta(hours=i) for i in range(100)]
    times[68:72] = [T0 + timedelta(hours=68)] * 4
    outcomes = [outcome(1.0 if i % 3 else -1.0, at=t, quality=float(i)) for i, t in enumerate(times)]
    model = _model(outcomes)
    assert (model.fit_n, model.test_n) == (68, 32)
    assert model.fit_end < model.test_start == T0 + timedelta(hours=68)


def test_too_few_scored_outcomes_give_a_reason_not_a_model() -> None:
    outcomes = [outcome(1.0, at=T0 + timedelta(hours=i), quality=50.0) for i in range(99)]
    outcomes += [outcome(1.0, at=T0, quality=None) for _ in range(10)]  # unscored: not counted
    result = fit_calibration(outcomes, CFG)
    assert result == (
        "n/a: 99 scored outcomes; at least 100 are needed to fit a calibration on the earlier 70% and test it "
        "on the later 30%"
    )


@pytest.mark.parametrize("method", list(CalibrationMethod))
def test_json_round_trip_predicts_identically(method: CalibrationMethod) -> None:
    model = _model(scored_stream(800, seed=9, components=True), LearningConfig(method=method))
    again = CalibrationModel.from_json(json.loads(json.dumps(model.to_json())))
    assert again == model
    rng = np.random.default_rng(0)
    for q, m, lr in zip(rng.uniform(0, 100, 50), rng.uniform(0, 1, 50), rng.uniform(0, 1, 50), strict=True):
        comps = {"momentum": float(m), "level_room": float(lr)}
        assert again.predict(float(q), comps) == model.predict(float(q), comps)
    with pytest.raises(ValueError, match="schema must be 1"):
        CalibrationModel.from_json({**model.to_json(), "schema": 2})


def test_model_invariants() -> None:
    model = _model(scored_stream(500, seed=1))
    data = model.to_json()
    with pytest.raises(ValueError, match=r"beats_base_rate must be exactly brier < brier_base with paired p < 0\.05"):
        CalibrationModel.from_json({**data, "beats_base_rate": not model.beats_base_rate})
    with pytest.raises(ValueError, match="fit part must end strictly before the held-out part starts"):
        CalibrationModel.from_json({**data, "test_start": data["fit_end"]})
    with pytest.raises(ValueError, match=r"quality must be within 0\.\.100"):
        model.predict(101.0, {})


# --- trader edge ---------------------------------------------------------------------------------------


def test_trader_edge_sums_and_sentence() -> None:
    edge = trader_edge([-1.0, -1.5, 2.0, 0.02, -4.0, 0.5], [2.0, -1.0, 1.2], [-1.0])
    assert (edge.rejected, edge.avoided_loss_r, edge.skipped_win_r) == (6, 6.5, 2.5)  # 0.02 is a breakeven
    assert (edge.approved, edge.approved_r, edge.expired, edge.expired_r) == (3, pytest.approx(2.2), 1, -1.0)
    assert edge.rejection_value_r == 4.0
    assert edge.sentence() == (
        "your 6 rejections avoided 6.5 R of losses and skipped 2.5 R of wins (net +4.0 R in your favour); "
        "your 3 approved signals made +2.2 R; 1 expired signals would have made -1.0 R"
    )
    none = trader_edge([], [1.0], [])
    assert none.sentence() == "no rejected signal has an outcome yet; your 1 approved signals made +1.0 R"
    costly = trader_edge([3.0], [], [])
    assert "(net -3.0 R against you)" in costly.sentence()
    with pytest.raises(ValueError, match="rejected R multiples must be finite"):
        trader_edge([math.inf], [], [])
