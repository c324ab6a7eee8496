"""trend_pullback on the real shared 1h FX, gold and crypto bars: it fires, its setups validate, no look-ahead."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest

from engine.domain import Interval, Rejection, Setup
from engine.indicators import MarketContext
from engine.pipeline import ValidationRules, candidates, validate
from engine.quality import QualityScorer
from engine.strategies.trend_pullback import TrendPullback
from engine.strategy import SignalArrays
from tests.support import shared_context

pytestmark = pytest.mark.shared_data

SYMBOLS = ("EURUSD", "GBPUSD", "XAUUSD", "BTCUSDT", "ETHUSDT")
NOT_FOR = ("SPY", "AAPL", "RELIANCE", "NIFTY50")
LOOKAHEAD_SAMPLE = 6
MIN_VALID_SHARE = 0.95
SCORE_EVERY = 50


def _at(sig: SignalArrays, t: int) -> np.ndarray:
    return np.array([sig.direction[t], sig.entry[t], sig.stop[t], sig.target[t]], dtype=np.float64)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_fires_and_most_setups_validate(symbol: str) -> None:
    ctx = shared_context(symbol)
    strategy = TrendPullback()
    assert strategy.applies_to(ctx.instrument)
    assert len(ctx) >= strategy.warmup

    sig = strategy.signals(ctx)
    fired = sig.fired()

    assert (sig.direction > 0).sum() > 0, f"{symbol}: no long setups"
    assert (sig.direction < 0).sum() > 0, f"{symbol}: no short setups"
    htf = ctx.higher(Interval.H4)
    slow = htf.on_base(htf.ind.ema(200))
    assert not np.isnan(slow[fired]).any(), "fired before the 4h EMA200 existed"

    setups: list[Setup] = []
    rejections: list[Rejection] = []
    scorer = QualityScorer()
    for candidate in candidates(strategy, ctx, sig, fired):
        now = candidate.bar_time + ctx.instrument.interval.delta + timedelta(minutes=1)
        result = validate(ctx.instrument, ctx.calendar, candidate, now, ValidationRules())
        if isinstance(result, Rejection):
            rejections.append(result)
            continue
        setups.append(result)
        assert Decimal("1.9") <= result.reward_risk <= Decimal("2.0")
        assert 2 <= len(result.reasons) <= 4
        if len(setups) % SCORE_EVERY == 0:
            assert 0.0 <= scorer.score(ctx, candidate.bar_index, result).total <= 100.0
    share = len(setups) / len(fired)
    assert share >= MIN_VALID_SHARE, f"{symbol}: only {share:.0%} valid; e.g. {[r.reason for r in rejections[:3]]}"


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_fired_bars_do_not_depend_on_later_bars(symbol: str) -> None:
    ctx = shared_context(symbol)
    strategy = TrendPullback()
    sig = strategy.signals(ctx)
    fired = sig.fired()
    sample = np.unique(fired[np.linspace(0, len(fired) - 1, LOOKAHEAD_SAMPLE).astype(np.int64)])

    for t in sample.tolist():
        for bar in (t - 1, t):
            cut = MarketContext(ctx.instrument, ctx.bars.head(bar + 1), ctx.calendar)
            np.testing.assert_array_equal(_at(strategy.signals(cut), bar), _at(sig, bar), err_msg=f"{symbol} {bar}")


@pytest.mark.parametrize("symbol", NOT_FOR)
def test_does_not_apply_to_equities_and_indices(symbol: str) -> None:
    assert not TrendPullback().applies_to(shared_context(symbol, n=10).instrument)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_each_reason_names_the_touch_and_trend_the_signal_rule_saw(symbol: str) -> None:
    """`explain` reads its one bar as scalars; the touch bar and trend EMAs it names are the signal rule's."""
    ctx = shared_context(symbol)
    strategy = TrendPullback()
    signals = strategy.signals(ctx)
    fired = signals.fired()
    levels = strategy._levels(ctx)
    sides = np.where(signals.direction[fired] > 0, 1.0, -1.0)
    touches = strategy._touches(ctx, levels, fired, sides)
    fast, slow = levels.trend_at(fired)
    fmt = f".{-ctx.instrument.tick_size.normalize().as_tuple().exponent}f"
    for k, i in enumerate(fired.tolist()):
        back = int(np.flatnonzero(touches[k])[0])
        trend, pulled, _, _ = strategy.explain(ctx, i, signals.side_at(i))
        assert f"EMA{strategy.params.trend_fast} {fast[k]:{fmt}} " in trend and trend.endswith(f" {slow[k]:{fmt}}")
        ago = "on the signal bar" if back == 0 else f"{back} bar{'s' if back > 1 else ''} ago"
        assert pulled.endswith(ago), (i, pulled, back)
