"""Learned score calibration on real shared-data backtests: fitted on the earlier trades, judged on the later ones."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bot.telegram.plots import reliability_png
from engine.backtest import BacktestConfig, backtest
from engine.calibration import CalibrationModel, fit_calibration
from engine.learning import CalibrationMethod, LearningConfig, Outcome
from engine.pipeline import EngineConfig
from engine.strategy import build_strategy
from tests.support import shared_context

pytestmark = pytest.mark.shared_data

PAIRS = (
    ("trend_pullback", "EURUSD"),
    ("trend_pullback", "XAUUSD"),
    ("trend_pullback", "BTCUSDT"),
    ("pattern_reversal", "SPY"),
    ("pattern_reversal", "QQQ"),
)
MIN_OUTCOMES = 1_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 10_000


@pytest.fixture(scope="module")
def outcomes(market_dir: Path) -> list[Outcome]:
    del market_dir
    out: list[Outcome] = []
    for name, symbol in PAIRS:
        result = backtest(shared_context(symbol), build_strategy(name), EngineConfig(), BacktestConfig())
        out += [Outcome.from_backtest(bt) for bt in result.trades]
    return out


def _fit(outcomes: list[Outcome], method: CalibrationMethod) -> CalibrationModel:
    model = fit_calibration(outcomes, LearningConfig(method=method))
    assert isinstance(model, CalibrationModel), model
    return model


@pytest.mark.parametrize("method", list(CalibrationMethod))
def test_calibration_is_judged_on_later_held_out_trades(outcomes: list[Outcome], method: CalibrationMethod) -> None:
    scored = sorted((o for o in outcomes if o.quality is not None), key=lambda o: o.closed_at)
    assert len(scored) == len(outcomes) >= MIN_OUTCOMES
    model = _fit(outcomes, method)
    print(
        f"\n{method}: {model.fitted_from}\n  fit {model.fit_n}, held out {model.test_n}, base rate "
        f"{model.base_rate:.3f}, Brier {model.brier:.4f} vs base rate {model.brier_base:.4f}, skill {model.skill}, "
        f"p {model.p_value}\n  {model.verdict()}\n  bins: "
        + ", ".join(
            f"[{b.lower:.1f},{b.upper:.1f}) n={b.n} pred {b.mean_predicted:.3f} obs {b.observed:.3f}"
            for b in model.bins
        )
    )
    assert model.fit_n + model.test_n == len(scored)
    assert model.test_n >= 0.3 * len(scored) - 1
    # Time order, checked against the outcomes themselves: every fit trade closed before every held-out one.
    assert model.fit_end < model.test_start
    assert sum(o.closed_at <= model.fit_end for o in scored) == model.fit_n
    assert sum(o.closed_at >= model.test_start for o in scored) == model.test_n
    assert (model.fit_start, model.test_end) == (scored[0].closed_at, scored[-1].closed_at)
    fit_wins = sum(o.won for o in scored[: model.fit_n])
    assert model.base_rate == pytest.approx(fit_wins / model.fit_n)
    for value in (model.brier, model.brier_base):
        assert math.isfinite(value) and 0.0 <= value <= 1.0
    held_out = scored[model.fit_n :]
    assert model.brier_base == pytest.approx(sum((model.base_rate - o.won) ** 2 for o in held_out) / model.test_n)
    assert model.brier == pytest.approx(
        sum((model.predict(o.quality or 0.0, o.components) - o.won) ** 2 for o in held_out) / model.test_n
    )
    assert model.beats_base_rate == (model.brier < model.brier_base and (model.p_value or 1.0) < 0.05)
    assert ("does NOT beat" in model.verdict()) == (not model.beats_base_rate)
    assert (model.estimate(60.0, {}) is None) == (not model.beats_base_rate)
    assert sum(b.n for b in model.bins) == model.test_n


def test_reliability_png(outcomes: list[Outcome], tmp_path: Path) -> None:
    model = _fit(outcomes, CalibrationMethod.ISOTONIC)
    path = reliability_png(model, tmp_path / "plots" / "reliability.png", "quality score calibration")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > MIN_PNG_BYTES
