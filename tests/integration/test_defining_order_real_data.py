"""Defining Order Breakout on the real shared 5m data: NSE (incl. the volume-less NIFTY 50) and US sessions."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from engine.domain import Interval, Rejection, Setup
from engine.indicators import MarketContext
from engine.pipeline import ValidationRules, candidates, validate
from engine.strategies.defining_order import DefiningOrderBreakout
from tests.support import shared_context

pytestmark = pytest.mark.shared_data

NSE = ("NIFTY50", "RELIANCE", "HDFCBANK", "INFY", "TCS", "SBIN", "ICICIBANK")
US = ("SPY", "QQQ", "AAPL", "MSFT")
# Entry (bar close) local minute window the defaults allow: 14:00 up to 25 minutes before the close.
ENTRY_WINDOW = {"NIFTY50": (14 * 60, 15 * 60 + 5), "SPY": (14 * 60, 15 * 60 + 35)}
LOOKAHEAD_SAMPLES = 4


def _window(symbol: str) -> tuple[int, int]:
    return ENTRY_WINDOW["NIFTY50" if symbol in NSE else "SPY"]


@pytest.mark.parametrize("symbol", NSE + US)
def test_fires_within_the_rules_on_real_sessions(symbol: str) -> None:
    ctx = shared_context(symbol)
    strategy = DefiningOrderBreakout()
    assert strategy.applies_to(ctx.instrument)
    signals = strategy.signals(ctx)
    fired = signals.fired()
    assert len(fired) > 0, f"{symbol}: no defining-order signal in {len(ctx)} bars"

    entry_minute = (ctx.local_minute[fired] + 5) % 1440
    first, last = _window(symbol)
    assert np.all((entry_minute >= first) & (entry_minute <= last))
    days_sides = list(zip(ctx.session_day[fired].tolist(), signals.direction[fired].tolist(), strict=True))
    assert len(days_sides) == len(set(days_sides)), "more than one signal per side per day"
    long, short = signals.direction[fired] > 0, signals.direction[fired] < 0
    assert np.all(signals.stop[fired][long] < signals.entry[fired][long])
    assert np.all(signals.stop[fired][short] > signals.entry[fired][short])
    np.testing.assert_allclose(
        signals.target[fired] - signals.entry[fired], 2.0 * (signals.entry[fired] - signals.stop[fired])
    )


@pytest.mark.parametrize("symbol", NSE + US)
def test_most_setups_pass_validation_just_after_the_bar_closes(symbol: str) -> None:
    ctx = shared_context(symbol)
    strategy = DefiningOrderBreakout()
    signals = strategy.signals(ctx)
    results = []
    for candidate in candidates(strategy, ctx, signals, signals.fired()):
        now = candidate.bar_time + ctx.instrument.interval.delta + timedelta(seconds=1)
        results.append(validate(ctx.instrument, ctx.calendar, candidate, now, ValidationRules()))
        assert 2 <= len(candidate.reasons) <= 4
    setups = [r for r in results if isinstance(r, Setup)]
    rejected = [r.reason for r in results if isinstance(r, Rejection)]
    assert len(setups) >= 0.9 * len(results), rejected
    assert all(s.reward_risk >= 1.9 for s in setups)


@pytest.mark.parametrize("symbol", ("NIFTY50", "RELIANCE", "INFY", "SPY", "MSFT"))
def test_no_look_ahead_at_fired_bars_and_their_neighbours(symbol: str) -> None:
    ctx = shared_context(symbol)
    strategy = DefiningOrderBreakout()
    full = strategy.signals(ctx)
    fired = full.fired()
    sample = fired[np.linspace(0, len(fired) - 1, LOOKAHEAD_SAMPLES).astype(int)]
    for t in sorted({int(i) + d for i in sample for d in (-1, 0, 1)}):
        head = strategy.signals(MarketContext(ctx.instrument, ctx.bars.head(t + 1), ctx.calendar))
        assert head.direction[t] == full.direction[t], f"{symbol} bar {t}"
        for name in ("entry", "stop", "target"):
            np.testing.assert_array_equal(getattr(head, name)[t], getattr(full, name)[t])


@pytest.mark.parametrize("symbol", ("RELIANCE", "SPY"))
def test_warmup_is_enough_for_the_hourly_bias(symbol: str) -> None:
    strategy = DefiningOrderBreakout()
    ctx = shared_context(symbol, n=strategy.warmup)
    htf = ctx.higher(Interval.H1)
    assert not np.isnan(htf.ind.sma(50)[htf.index[-1]])


def test_volume_rule_is_skipped_only_for_the_index() -> None:
    nifty = shared_context("NIFTY50")
    assert not nifty.instrument.has_volume
    assert float(nifty.bars.volume.max()) == 0.0
    strategy = DefiningOrderBreakout()
    signals = strategy.signals(nifty)
    fired = signals.fired()
    assert len(fired) > 0
    for i in fired[:3].tolist():
        assert strategy.explain(nifty, i, signals.side_at(i))[3] == "no volume data: late-entry volume rule skipped"
