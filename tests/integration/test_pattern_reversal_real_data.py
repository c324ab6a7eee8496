"""pattern_reversal on the real shared OHLCV files: it fires, its setups validate, and it never looks ahead."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from engine.bars import Bars
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.domain import Interval, Setup
from engine.indicators import MarketContext
from engine.pipeline import ValidationRules, candidates, validate
from engine.strategies.pattern_reversal import PatternReversal
from engine.strategy import SignalArrays
from tests.support import shared_bars

FILES = (
    ("SPY", "5m"),
    ("RELIANCE", "5m"),
    ("NIFTY50", "5m"),
    ("EURUSD", "1h"),
    ("BTCUSDT", "1h"),
    ("XAUUSD", "1d"),
    ("AAPL", "1d"),
)
LOOK_AHEAD_SAMPLES = 8
VALIDATION_SAMPLES = 300


def real_context(symbol: str, interval: str, bars: Bars | None = None) -> MarketContext:
    """Context over a shared file, with the instrument's interval set to the file's (1d files too)."""
    instrument = replace(default_instrument(symbol), interval=Interval(interval))
    return MarketContext(
        instrument, bars if bars is not None else shared_bars(symbol, interval), get_calendar(instrument.calendar)
    )


@pytest.fixture(scope="module")
def scans() -> dict[tuple[str, str], tuple[MarketContext, SignalArrays]]:
    strategy = PatternReversal()
    out = {}
    for symbol, interval in FILES:
        ctx = real_context(symbol, interval)
        out[symbol, interval] = ctx, strategy.signals(ctx)
    return out


@pytest.mark.parametrize(("symbol", "interval"), FILES)
def test_fires_on_a_minority_of_bars_with_both_sides(
    scans: dict[tuple[str, str], tuple[MarketContext, SignalArrays]], symbol: str, interval: str
) -> None:
    ctx, sig = scans[symbol, interval]
    rate = sig.fired().size / len(ctx)

    assert (sig.direction == 1).sum() > 0 and (sig.direction == -1).sum() > 0
    assert 0.005 < rate < 0.08, f"{symbol} {interval} fires on {rate:.1%} of bars"
    assert not sig.direction[: PatternReversal().warmup - 1].any()


@pytest.mark.parametrize(("symbol", "interval"), FILES)
def test_fired_setups_pass_validation_when_fresh(
    scans: dict[tuple[str, str], tuple[MarketContext, SignalArrays]], symbol: str, interval: str
) -> None:
    ctx, sig = scans[symbol, interval]
    strategy = PatternReversal()
    fired = sig.fired()
    # An evenly spaced sample over the whole history keeps the test quick.
    sample = fired[np.linspace(0, fired.size - 1, min(VALIDATION_SAMPLES, fired.size)).astype(np.int64)]
    results = []
    for candidate in candidates(strategy, ctx, sig, sample):
        now = candidate.bar_time + ctx.instrument.interval.delta + timedelta(seconds=1)
        results.append(validate(ctx.instrument, ctx.calendar, candidate, now, ValidationRules()))
        assert 2 <= len(candidate.reasons) <= 4
        assert any(ch.isdigit() for reason in candidate.reasons for ch in reason)
    setups = [r for r in results if isinstance(r, Setup)]

    assert len(setups) >= 0.9 * len(results) > 0
    # Tick rounding moves the stop away and the target towards entry, so the 2R is a ceiling.
    reward_risk = np.array([float(s.reward_risk) for s in setups])
    assert reward_risk.max() <= 2.0
    assert np.median(reward_risk) >= 1.95


@pytest.mark.parametrize(("symbol", "interval"), FILES)
def test_no_look_ahead_on_fired_bars(
    scans: dict[tuple[str, str], tuple[MarketContext, SignalArrays]], symbol: str, interval: str
) -> None:
    ctx, sig = scans[symbol, interval]
    strategy = PatternReversal()
    fired = sig.fired()
    rng = np.random.default_rng(7)
    sample = rng.choice(fired, size=min(LOOK_AHEAD_SAMPLES, fired.size), replace=False)
    # Also the bar right after a fired bar: a signal must not appear or vanish once the future is cut.
    checked = np.unique(np.r_[sample, np.minimum(sample + 1, len(ctx) - 1)])
    for t in checked.tolist():
        cut = real_context(symbol, interval, ctx.bars.head(t + 1))
        cut_sig = strategy.signals(cut)
        assert cut_sig.direction[t] == sig.direction[t], f"direction differs at bar {t}"
        np.testing.assert_array_equal(
            [cut_sig.entry[t], cut_sig.stop[t], cut_sig.target[t]], [sig.entry[t], sig.stop[t], sig.target[t]]
        )
        if sig.direction[t]:
            side = sig.side_at(t)
            assert strategy.explain(cut, t, side) == strategy.explain(ctx, t, side)
