"""Quality score: deterministic, explainable, an honest weighted mean of what actually applies."""

from __future__ import annotations

import math
from datetime import UTC
from decimal import ROUND_CEILING, ROUND_FLOOR

import numpy as np
import pytest

from engine.domain import Interval, QualityScore, Setup, Side
from engine.indicators import MarketContext
from engine.pipeline import EngineConfig, assess, candidates
from engine.quality import DEFAULT_WEIGHTS, Component, QualityScorer, QualityWeights
from engine.strategy import REGISTRY, strategy_names
from tests.support import shared_context

BAR = 5_000  # well past every warm-up, including EMA200 on the hourly view of 5-minute bars
COMPONENT_NAMES = {c.value for c in Component}


def setup_at(ctx: MarketContext, i: int, side: Side, risk_atr: float = 1.5, reward_atr: float = 3.0) -> Setup:
    """A setup a strategy could have proposed at real bar `i`: entry at the close, ATR-based stop and target."""
    instrument = ctx.instrument
    close, atr = float(ctx.bars.close[i]), float(ctx.ind.atr(14)[i])
    sign = side.sign
    # Like validation: entry away from the target, stop away from entry, target towards entry.
    down_for_long = ROUND_FLOOR if side is Side.LONG else ROUND_CEILING
    entry = instrument.price(close, ROUND_CEILING if side is Side.LONG else ROUND_FLOOR)
    stop = instrument.price(close - sign * risk_atr * atr, down_for_long)
    target = instrument.price(close + sign * reward_atr * atr, down_for_long)
    return Setup("probe", instrument.symbol, side, entry, stop, (target,), ctx.bars.bar_time(i), ctx.bars.interval)


def weighted_mean(score: QualityScore) -> float:
    total_weight = sum(c.weight for c in score.components)
    return 100 * sum(c.value * c.weight for c in score.components) / total_weight


def names(score: QualityScore) -> set[str]:
    return {c.name for c in score.components}


@pytest.fixture(scope="module")
def reliance() -> MarketContext:
    return shared_context("RELIANCE")


def test_the_same_setup_scores_identically_on_fresh_contexts(reliance: MarketContext) -> None:
    setup = setup_at(reliance, BAR, Side.LONG)
    first = QualityScorer().score(reliance, BAR, setup)
    second = QualityScorer().score(
        shared_context("RELIANCE"), BAR, setup_at(shared_context("RELIANCE"), BAR, Side.LONG)
    )
    assert first == second
    assert first.components == second.components


def test_total_is_the_weighted_mean_of_the_components(reliance: MarketContext) -> None:
    for i in (BAR, BAR + 37, 9_000, 15_555):
        for side in Side:
            score = QualityScorer().score(reliance, i, setup_at(reliance, i, side))
            assert score.total == pytest.approx(weighted_mean(score), abs=0.05 + 1e-9)
            assert score.total == round(score.total, 1)
            for component in score.components:
                assert component.weight == DEFAULT_WEIGHTS[Component(component.name)]


def test_a_weight_of_zero_leaves_the_component_out(reliance: MarketContext) -> None:
    setup = setup_at(reliance, BAR, Side.SHORT)
    full = QualityScorer().score(reliance, BAR, setup)
    assert Component.TREND_ALIGNMENT.value in names(full)
    without = QualityScorer(QualityWeights({**DEFAULT_WEIGHTS, Component.TREND_ALIGNMENT: 0.0}))
    score = without.score(reliance, BAR, setup)
    assert names(score) == names(full) - {Component.TREND_ALIGNMENT.value}
    assert score.total == pytest.approx(weighted_mean(score), abs=0.05 + 1e-9)


def test_a_component_missing_from_the_weights_is_left_out(reliance: MarketContext) -> None:
    only_momentum = QualityScorer(QualityWeights({Component.MOMENTUM: 0.3}))
    score = only_momentum.score(reliance, BAR, setup_at(reliance, BAR, Side.LONG))
    assert names(score) == {Component.MOMENTUM.value}
    assert score.total == round(100 * score.components[0].value, 1)


@pytest.mark.parametrize(("reward_atr", "expected"), [(1.5, 33.3), (3.0, 66.7), (4.5, 100.0), (9.0, 100.0)])
def test_reward_risk_alone_scores_its_ratio_against_3r(reliance: MarketContext, reward_atr: float, expected: float):
    scorer = QualityScorer(QualityWeights({Component.REWARD_RISK: 1.0}))
    setup = setup_at(reliance, BAR, Side.LONG, risk_atr=1.5, reward_atr=reward_atr)
    score = scorer.score(reliance, BAR, setup)
    assert score.total == pytest.approx(min(float(setup.reward_risk) / 3, 1.0) * 100, abs=0.05 + 1e-9)
    assert score.total == pytest.approx(expected, abs=1.5)  # the ATR levels are rounded to the 0.05 tick
    assert score.components[0].reason == f"reward:risk {setup.reward_risk}"


def test_a_better_target_never_lowers_the_score(reliance: MarketContext) -> None:
    for i in range(BAR, BAR + 300, 30):
        totals = [
            QualityScorer().score(reliance, i, setup_at(reliance, i, Side.LONG, reward_atr=r)).total
            for r in (1.0, 2.0, 3.0, 5.0)
        ]
        assert totals == sorted(totals)


@pytest.mark.parametrize("weight", [1.01, -0.01, math.nan, math.inf])
def test_weights_outside_0_to_1_are_refused(weight: float) -> None:
    with pytest.raises(ValueError, match=r"quality weight momentum must be within 0\.\.1"):
        QualityWeights({**DEFAULT_WEIGHTS, Component.MOMENTUM: weight})


def test_all_zero_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one quality weight must be above 0"):
        QualityWeights(dict.fromkeys(Component, 0.0))


def test_default_weights_cover_every_component() -> None:
    assert set(QualityWeights().weights) == set(Component)
    assert sum(QualityWeights().weights.values()) == pytest.approx(1.0)


def test_volume_is_left_out_for_an_index_without_volume() -> None:
    nifty = shared_context("NIFTY50")
    assert not nifty.instrument.has_volume
    score = QualityScorer().score(nifty, BAR, setup_at(nifty, BAR, Side.LONG))
    assert Component.VOLUME_CONFIRMATION.value not in names(score)
    assert score.total == pytest.approx(weighted_mean(score), abs=0.05 + 1e-9)


def test_volume_counts_for_a_stock_with_volume(reliance: MarketContext) -> None:
    score = QualityScorer().score(reliance, BAR, setup_at(reliance, BAR, Side.LONG))
    volume = next(c for c in score.components if c.name == Component.VOLUME_CONFIRMATION.value)
    ratio = reliance.bars.volume[BAR] / reliance.bars.volume[BAR - 19 : BAR + 1].mean()
    assert volume.value == pytest.approx(min(max(ratio - 0.5, 0.0), 1.0), abs=1e-4)
    assert volume.reason == f"volume {ratio:.1f}x its 20-bar mean"


def test_components_needing_history_are_left_out_early_not_faked() -> None:
    young = shared_context("RELIANCE", n=30)
    score = QualityScorer().score(young, 29, setup_at(young, 29, Side.LONG))
    missing = {Component.TREND_ALIGNMENT, Component.MOMENTUM, Component.VOLATILITY_REGIME, Component.LEVEL_ROOM}
    assert names(score) == COMPONENT_NAMES - {c.value for c in missing}


@pytest.mark.parametrize(
    ("symbol", "interval"),
    [("RELIANCE", None), ("NIFTY50", None), ("EURUSD", None), ("XAUUSD", None), ("BTCUSDT", None), ("SPY", None)],
)
def test_every_score_on_real_bars_is_explained_and_bounded(symbol: str, interval: str | None) -> None:
    ctx = shared_context(symbol, interval)
    scorer = QualityScorer()
    for i in range(2_500, len(ctx), (len(ctx) - 2_500) // 40):
        for side in Side:
            score = scorer.score(ctx, i, setup_at(ctx, i, side))
            assert 0.0 <= score.total <= 100.0
            assert score.components, f"{symbol} bar {i}: no component applied"
            assert names(score) <= COMPONENT_NAMES
            for component in score.components:
                assert component.reason.strip(), f"{symbol} bar {i}: {component.name} has no reason"
                assert 0.0 <= component.value <= 1.0
            assert score.total == pytest.approx(weighted_mean(score), abs=0.05 + 1e-9)
            assert [c.name for c in score.top(2)] == [
                c.name for c in sorted(score.components, key=lambda c: (-c.value * c.weight, c.name))[:2]
            ]


def test_trend_alignment_for_long_and_short_never_both_agree(reliance: MarketContext) -> None:
    only_trend = QualityScorer(QualityWeights({Component.TREND_ALIGNMENT: 1.0}))
    sums = []
    for i in range(3_000, 18_000, 250):
        long = only_trend.score(reliance, i, setup_at(reliance, i, Side.LONG)).components[0].value
        short = only_trend.score(reliance, i, setup_at(reliance, i, Side.SHORT)).components[0].value
        sums.append(long + short)
    assert max(sums) <= 1.0
    assert sum(s == 1.0 for s in sums) >= 0.95 * len(sums)  # exact ties with the EMA are rare


def test_trend_value_matches_what_the_reason_tells_the_trader(reliance: MarketContext) -> None:
    only_trend = QualityScorer(QualityWeights({Component.TREND_ALIGNMENT: 1.0}))
    seen = set()
    for i in range(3_000, 18_000, 125):
        for side in Side:
            component = only_trend.score(reliance, i, setup_at(reliance, i, side)).components[0]
            base, higher = component.reason.split("; ")
            agreeing = base.startswith("5m with ") + higher.startswith(
                f"1h EMA50/200 with {'up' if side is Side.LONG else 'down'}"
            )
            assert component.value == agreeing / 2, component.reason
            seen.add(agreeing)
    assert seen == {0, 1, 2}


def test_nse_session_quality_marks_the_open_and_the_close(reliance: MarketContext) -> None:
    only_session = QualityScorer(QualityWeights({Component.SESSION_QUALITY: 1.0}))
    day_start = 75 * 40
    assert reliance.minutes_from_open[day_start] == 0
    expected = {
        0: (0.5, "first 15 minutes of the session"),  # 09:15 IST
        2: (0.5, "first 15 minutes of the session"),  # 09:25
        3: (1.0, "core session hours"),  # 09:30
        68: (1.0, "core session hours"),  # 14:55, closes 15:00
        69: (0.5, "last 30 minutes of the session"),  # 15:00
        74: (0.5, "last 30 minutes of the session"),  # 15:25, the last bar
    }
    for offset, (value, reason) in expected.items():
        i = day_start + offset
        component = only_session.score(reliance, i, setup_at(reliance, i, Side.LONG)).components[0]
        assert (component.value, component.reason) == (value, reason), offset


def test_fx_session_quality_follows_london_and_new_york() -> None:
    eurusd = shared_context("EURUSD")
    only_session = QualityScorer(QualityWeights({Component.SESSION_QUALITY: 1.0}))
    seen = {}
    for i in range(3_000, 3_048):
        hour = eurusd.bars.bar_time(i).astimezone(UTC).hour
        component = only_session.score(eurusd, i, setup_at(eurusd, i, Side.LONG)).components[0]
        seen[hour] = (component.value, component.reason)
    assert seen[13] == (1.0, "London/New York overlap")
    assert seen[8] == (0.8, "London session")
    assert seen[18] == (0.8, "New York session")
    assert seen[2] == (0.5, "Asian session")


def test_daily_bars_have_no_session_component() -> None:
    daily = shared_context("SPY", "1d")
    assert daily.bars.interval is Interval.D1
    score = QualityScorer().score(daily, 1_000, setup_at(daily, 1_000, Side.LONG))
    assert Component.SESSION_QUALITY.value not in names(score)
    assert Component.TREND_ALIGNMENT.value in names(score)


@pytest.mark.parametrize(
    ("symbol", "interval"), [("RELIANCE", None), ("EURUSD", None), ("BTCUSDT", None), ("SPY", "1d"), ("NIFTY50", None)]
)
def test_a_sheet_of_many_bars_scores_each_as_the_scorer_does_one_bar(symbol: str, interval: str | None) -> None:
    """A backtest gathers the score's inputs at every bar that fired at once; each score is the one-bar score."""
    ctx = shared_context(symbol, interval)
    bars = np.arange(0, len(ctx), max(1, len(ctx) // 300), dtype=np.int64)  # the first bars too: short windows
    for weights in (QualityWeights(), QualityWeights({Component.PATTERN_CONFLUENCE: 1.0, Component.MOMENTUM: 0.5})):
        scorer = QualityScorer(weights)
        sheet = scorer.sheet(ctx, bars)
        assert sheet.bars == bars.tolist()
        for k, i in enumerate(bars.tolist()):
            for side in Side:
                if i < 20:
                    continue  # no ATR yet for the probe's levels
                setup = setup_at(ctx, i, side)
                assert sheet.score(k, setup) == scorer.score(ctx, i, setup), f"{symbol} bar {i} {side}"


def test_a_total_is_what_its_stored_components_give_back() -> None:
    """Component values are Python floats, so a score read back from its stored components totals the same: a
    numpy value rounded the total its own way (49.15, stored as 49.1499..., became 49.2 instead of 49.1)."""
    ctx = shared_context("RELIANCE")
    scorer = QualityScorer()
    for i in range(2_500, len(ctx), (len(ctx) - 2_500) // 200):
        for side in Side:
            score = scorer.score(ctx, i, setup_at(ctx, i, side))
            assert all(type(c.value) is float for c in score.components) and type(score.total) is float
            stored = [(float(repr(c.value)), c.weight) for c in score.components]
            again = 100 * sum(v * w for v, w in stored) / sum(w for _, w in stored)
            assert round(again, 1) == score.total
    assert round(49.15, 1) == 49.1 and round(float(np.float64(49.15)), 1) == 49.1


def test_assessing_with_a_sheet_of_another_bar_is_refused() -> None:
    ctx = shared_context("EURUSD")
    strategy_names()  # registers the strategies
    strategy = REGISTRY["trend_pullback"]()
    signals = strategy.signals(ctx)
    fired = signals.fired()
    config = EngineConfig()
    sheet = config.scorer.sheet(ctx, fired)
    first, second = candidates(strategy, ctx, signals, fired[:2])
    assert assess(ctx, second, config, None, sheet, 1) == assess(ctx, second, config, None)
    with pytest.raises(ValueError, match=r"score sheet row 0 is not bar \d+ of this context and scorer"):
        assess(ctx, second, config, None, sheet, 0)
    with pytest.raises(ValueError, match="of this context and scorer"):
        assess(ctx, first, EngineConfig(scorer=QualityScorer()), None, sheet, 0)
