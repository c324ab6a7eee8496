"""trend_pullback on hand-built 1h EURUSD bars: exact signal bar, each filter, levels and reasons.

Bars are piecewise-linear closes in pips (open = previous close, high/low = body +/- a wick) starting on a
4h bin edge of the FX calendar (bins start 22:00 UTC + 4h k), so 4h bin k is base bars 4k..4k+3 and the
expected indicator values are recomputed here with TA-Lib on plain arrays, independently of the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import talib

from engine.bars import Bars
from engine.domain import Interval, Side
from engine.strategies.trend_pullback import TrendPullback, TrendPullbackParams
from engine.strategy import build_strategy, strategy_names
from tests.builders import make_bars, make_context

PIP = 0.0001
BASE_PRICE = 1.05
MIRROR_PRICE = 2.4
START = datetime(2025, 1, 6, 2, 0, tzinfo=UTC)
BARS_PER_BIN = 4

UPTREND = ((1100, 1.0),)
# Four 3-pip down bars pull the close under EMA20 and RSI under 50; a 4-pip bar recovers both.
PULLBACK = (-3.0, -3.0, -3.0, -3.0, 4.0)
# Weaker recovery: RSI crosses 50 but the close stays under EMA20.
WEAK_RECOVERY = (-3.0, -3.0, -3.0, -3.0, 2.0)
# Down 1 pip/bar then up 1 pip/bar: the close is above the 4h EMA200 but EMA50 is still below it.
V_TURN = ((800, -1.0), (300, 1.0))
# Up, a sharp 3 pip/bar drop under the 4h EMA200, then up again: EMA50 is still above EMA200.
DROP_BELOW_SLOW = ((900, 1.0), (150, -3.0), (60, 1.0))
# A slow 3 pip/bar slide then a 0.6 pip/bar climb: RSI crosses 50 bars after the lows left EMA20.
SLIDE = ((1000, 1.0), (30, -3.0))
CLIMB = (0.6,) * 30


def trend_bars(
    segments: tuple[tuple[int, float], ...], tail: tuple[float, ...] = (), wick: float = 0.5, mirror: bool = False
) -> Bars:
    """1h bars whose close moves by each segment's pips per bar, then by the tail's pips bar by bar."""
    steps = np.concatenate([np.full(n, pips) for n, pips in segments] + [np.asarray(tail, dtype=float)])
    close = BASE_PRICE + np.cumsum(steps) * PIP
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + wick * PIP
    low = np.minimum(open_, close) - wick * PIP
    if mirror:
        close, open_, high, low = MIRROR_PRICE - close, MIRROR_PRICE - open_, MIRROR_PRICE - low, MIRROR_PRICE - high
    return make_bars(
        close.tolist(), open=open_.tolist(), high=high.tolist(), low=low.tolist(), interval=Interval.H1, start=START
    )


@dataclass(frozen=True)
class Reference:
    """Indicators recomputed independently: TA-Lib on the raw arrays, 4h bins as groups of 4 bars."""

    bars: Bars
    ema20: np.ndarray
    atr14: np.ndarray
    rsi14: np.ndarray
    htf_ema50: np.ndarray
    htf_ema200: np.ndarray

    @classmethod
    def of(cls, bars: Bars) -> Reference:
        htf_close = bars.close[BARS_PER_BIN - 1 :: BARS_PER_BIN]
        return cls(
            bars,
            talib.EMA(bars.close, timeperiod=20),
            talib.ATR(bars.high, bars.low, bars.close, timeperiod=14),
            talib.RSI(bars.close, timeperiod=14),
            talib.EMA(htf_close, timeperiod=50),
            talib.EMA(htf_close, timeperiod=200),
        )

    def trend(self, i: int) -> tuple[float, float]:
        """4h EMA50 and EMA200 of the last bin closed by bar i's close."""
        k = (i + 1) // BARS_PER_BIN - 1
        return float(self.htf_ema50[k]), float(self.htf_ema200[k])

    def touched_long(self, j: int, touch_atr: float = 0.25) -> bool:
        return bool(self.bars.low[j] <= self.ema20[j] + touch_atr * self.atr14[j])

    def local_long_rules(self, i: int) -> bool:
        """The base-timeframe long rules at bar i: RSI cross of 50, close above EMA20, a touch in 5 bars."""
        return bool(
            self.rsi14[i - 1] <= 50.0 < self.rsi14[i]
            and self.bars.close[i] > self.ema20[i]
            and any(self.touched_long(j) for j in range(i - 4, i + 1))
        )


def run(bars: Bars, **params: Any) -> tuple[np.ndarray, Any]:
    ctx = make_context(bars, "EURUSD")
    return TrendPullback(TrendPullbackParams(**params)).signals(ctx).direction, ctx


def test_long_fires_on_the_recovery_bar_not_one_bar_earlier() -> None:
    bars = trend_bars(UPTREND, PULLBACK)
    t = len(bars) - 1
    ref = Reference.of(bars)
    fast, slow = ref.trend(t)
    assert fast > slow
    assert bars.close[t] > slow
    assert ref.local_long_rules(t)
    assert ref.rsi14[t - 1] <= 50.0

    direction, _ = run(bars)

    assert direction[t - 1] == 0
    assert direction[t] == 1
    assert np.flatnonzero(direction).tolist() == [t]


def test_stop_and_target_are_atr_multiples_of_the_entry_close() -> None:
    bars = trend_bars(UPTREND, PULLBACK)
    t = len(bars) - 1
    atr = Reference.of(bars).atr14[t]
    strategy = TrendPullback(TrendPullbackParams(atr_stop_mult=2.0, reward_risk=3.0))

    sig = strategy.signals(make_context(bars, "EURUSD"))

    assert sig.entry[t] == bars.close[t]
    assert sig.stop[t] == pytest.approx(bars.close[t] - 2.0 * atr, abs=1e-12)
    assert sig.target[t] == pytest.approx(bars.close[t] + 3.0 * 2.0 * atr, abs=1e-12)
    unfired = sig.direction == 0
    assert np.isnan(sig.entry[unfired]).all()
    assert np.isnan(sig.stop[unfired]).all()
    assert np.isnan(sig.target[unfired]).all()


def test_short_is_the_mirror_image() -> None:
    bars = trend_bars(UPTREND, PULLBACK, mirror=True)
    t = len(bars) - 1
    atr = Reference.of(bars).atr14[t]

    sig = TrendPullback().signals(make_context(bars, "EURUSD"))

    assert np.flatnonzero(sig.direction).tolist() == [t]
    assert sig.direction[t] == -1
    assert sig.stop[t] == pytest.approx(bars.close[t] + 1.5 * atr, abs=1e-12)
    assert sig.target[t] == pytest.approx(bars.close[t] - 2.0 * 1.5 * atr, abs=1e-12)


def test_higher_timeframe_ema50_below_ema200_blocks_the_long() -> None:
    bars = trend_bars(V_TURN, PULLBACK)
    t = len(bars) - 1
    ref = Reference.of(bars)
    fast, slow = ref.trend(t)
    assert fast < slow
    assert bars.close[t] > slow
    assert ref.local_long_rules(t)

    direction, _ = run(bars)

    assert direction[t] == 0


def test_close_below_the_higher_timeframe_ema200_blocks_the_long() -> None:
    bars = trend_bars(DROP_BELOW_SLOW, PULLBACK)
    t = len(bars) - 1
    ref = Reference.of(bars)
    fast, slow = ref.trend(t)
    assert fast > slow
    assert bars.close[t] < slow
    assert ref.local_long_rules(t)

    direction, _ = run(bars)

    assert direction[t] == 0


def test_close_still_under_ema20_blocks_the_long() -> None:
    bars = trend_bars(UPTREND, WEAK_RECOVERY)
    t = len(bars) - 1
    ref = Reference.of(bars)
    assert ref.rsi14[t - 1] <= 50.0 < ref.rsi14[t]
    assert bars.close[t] <= ref.ema20[t]

    direction, _ = run(bars)

    assert direction[t] == 0


def test_rsi_not_crossing_the_trigger_blocks_the_long() -> None:
    bars = trend_bars(UPTREND, PULLBACK)
    t = len(bars) - 1
    assert Reference.of(bars).rsi14[t] < 60.0

    direction, _ = run(bars, rsi_trigger=60.0)

    assert direction[t] == 0


def test_pullback_must_touch_within_the_last_pullback_bars() -> None:
    bars = trend_bars(SLIDE, CLIMB, wick=0.2)
    ref = Reference.of(bars)
    direction, _ = run(bars)
    (t,) = np.flatnonzero(direction).tolist()
    touches = [j for j in range(t - 9, t + 1) if ref.touched_long(j)]
    assert touches[-1] == t - 4  # the last bar whose low reached EMA20 + 0.25 ATR

    assert direction[t] == 1
    assert direction[t - 1] == 0
    assert direction[t + 1] == 0  # RSI is still above 50 but crossed on the bar before
    assert run(bars, pullback_bars=4)[0][t] == 0


def test_touch_band_is_touch_atr_times_atr_above_ema20() -> None:
    bars = trend_bars(SLIDE, CLIMB, wick=0.2)
    ref = Reference.of(bars)
    t = int(np.flatnonzero(run(bars)[0])[0])
    assert not ref.touched_long(t - 3, touch_atr=0.25)
    assert ref.touched_long(t - 3, touch_atr=0.5)

    assert run(bars, pullback_bars=4, touch_atr=0.5)[0][t] == 1


def test_no_signal_before_the_higher_timeframe_ema200_exists() -> None:
    bars = trend_bars(((700, 1.0),), PULLBACK)  # 176 4h bins: EMA200 is still undefined
    assert np.isnan(Reference.of(bars).htf_ema200).all()

    direction, _ = run(bars)

    assert not direction.any()


def test_output_at_a_bar_ignores_every_later_bar() -> None:
    full = trend_bars(UPTREND, (*PULLBACK, -40.0, -40.0, 80.0, -3.0))
    t = len(full) - 5
    whole = TrendPullback().signals(make_context(full, "EURUSD"))
    cut = TrendPullback().signals(make_context(full.head(t + 1), "EURUSD"))

    assert whole.direction[t] == cut.direction[t] == 1
    assert (whole.entry[t], whole.stop[t], whole.target[t]) == (cut.entry[t], cut.stop[t], cut.target[t])


def test_explain_gives_the_numbers_behind_each_rule() -> None:
    bars = trend_bars(UPTREND, PULLBACK)
    t = len(bars) - 1
    ref = Reference.of(bars)
    fast, slow = ref.trend(t)
    last_touch = max(j for j in range(t - 4, t + 1) if ref.touched_long(j))
    ago = "on the signal bar" if last_touch == t else f"{t - last_touch} bar{'s' if t - last_touch > 1 else ''} ago"

    reasons = TrendPullback().explain(make_context(bars, "EURUSD"), t, Side.LONG)

    assert reasons == (
        f"4h trend up: EMA50 {fast:.5f} > EMA200 {slow:.5f}",
        f"pulled back to EMA20 {ref.ema20[last_touch]:.5f}: low {bars.low[last_touch]:.5f} {ago}",
        f"RSI {ref.rsi14[t]:.1f} recovered above 50 (prev {ref.rsi14[t - 1]:.1f})",
        f"close {bars.close[t]:.5f} above EMA20 {ref.ema20[t]:.5f} and 4h EMA200 {slow:.5f}",
    )


def test_explain_short_names_the_high_and_the_fall_below_50() -> None:
    bars = trend_bars(UPTREND, PULLBACK, mirror=True)
    t = len(bars) - 1

    reasons = TrendPullback().explain(make_context(bars, "EURUSD"), t, Side.SHORT)

    assert reasons[0].startswith("4h trend down: EMA50 ")
    assert " < EMA200 " in reasons[0]
    assert ": high " in reasons[1]
    assert "fell back below 50" in reasons[2]
    assert reasons[3].startswith(f"close {bars.close[t]:.5f} below EMA20 ")


@pytest.mark.parametrize(
    ("symbol", "interval", "trend_interval", "expected"),
    [
        ("EURUSD", Interval.H1, "4h", True),
        ("GBPUSD", Interval.M15, "4h", True),
        ("XAUUSD", Interval.H1, "4h", True),
        ("BTCUSDT", Interval.H1, "4h", True),
        ("ETHUSDT", Interval.M30, "4h", True),
        ("EURUSD", Interval.H4, "1d", True),
        ("EURUSD", Interval.H4, "4h", False),
        ("EURUSD", Interval.H1, "1h", False),
        ("EURUSD", Interval.M5, "4h", False),
        ("EURUSD", Interval.D1, "4h", False),
        ("SPY", Interval.H1, "4h", False),
        ("RELIANCE", Interval.H1, "4h", False),
        ("NIFTY50", Interval.M15, "4h", False),
    ],
)
def test_applies_to_fx_metal_crypto_intraday_below_the_trend_interval(
    symbol: str, interval: Interval, trend_interval: str, expected: bool
) -> None:
    instrument = make_context(make_bars([1.0, 1.0], interval=interval), symbol).instrument
    strategy = build_strategy("trend_pullback", {"trend_interval": trend_interval})

    assert strategy.applies_to(instrument) is expected


def test_signals_refuses_a_trend_interval_not_above_the_bars() -> None:
    bars = make_bars(np.linspace(1.0, 1.1, 50).tolist(), interval=Interval.H4, start=START)
    with pytest.raises(ValueError, match="trend_interval 4h must be above the base interval 4h"):
        TrendPullback().signals(make_context(bars, "EURUSD"))


def test_fewer_than_two_bars_gives_no_signal() -> None:
    sig = TrendPullback().signals(make_context(make_bars([1.1], interval=Interval.H1, start=START), "EURUSD"))
    assert sig.direction.tolist() == [0]
    assert np.isnan(sig.entry[0])


def test_params_coerce_text_interval_and_whole_floats() -> None:
    params = TrendPullbackParams(trend_interval="1d", trend_fast=40.0, pullback_bars=3.0)  # type: ignore[arg-type]
    assert params.trend_interval is Interval.D1
    assert type(params.trend_fast) is int
    assert params.trend_fast == 40
    assert type(params.pullback_bars) is int
    assert params.pullback_bars == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"trend_interval": "3h"}, "trend_interval must be one of"),
        ({"trend_fast": 200, "trend_slow": 200}, "trend_fast .200. must be shorter than trend_slow .200."),
        ({"pullback_ema": 1}, "pullback_ema must be a whole number of at least 2"),
        ({"pullback_bars": 0}, "pullback_bars must be a whole number of at least 1"),
        ({"pullback_bars": 2.5}, "pullback_bars must be a whole number"),
        ({"touch_atr": -0.1}, "touch_atr must not be negative"),
        ({"rsi_trigger": 100.0}, "rsi_trigger must be within 0..100"),
        ({"atr_stop_mult": 0.0}, "atr_stop_mult must be positive"),
        ({"reward_risk": -1.0}, "reward_risk must be positive"),
    ],
)
def test_params_reject_invalid_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrendPullbackParams(**overrides)


def test_registered_with_search_space_and_warmup() -> None:
    assert "trend_pullback" in strategy_names()
    space = TrendPullbackParams.search_space()
    assert set(space) == {
        "trend_fast",
        "trend_slow",
        "pullback_ema",
        "pullback_bars",
        "touch_atr",
        "rsi_trigger",
        "atr_stop_mult",
        "reward_risk",
    }
    assert space["trend_slow"] == (100.0, 300.0, 25.0)
    assert TrendPullback().warmup == (200 + 50) * 4
    assert TrendPullback(TrendPullbackParams(trend_slow=300)).warmup == (300 + 50) * 4
