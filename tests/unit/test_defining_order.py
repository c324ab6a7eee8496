"""Defining Order Breakout on hand-built NSE 5m sessions (09:15-15:30 IST, bar 0 opens 09:15).

The base day: the 60-minute range is bars 0-11 (high 100.00 on bar 5, low 99.00 on bar 3); afterwards the
close drifts up below the range high in a +-0.15 zigzag, so the 1h closes rise (bias up with a 3-period SMA,
which one session can supply). Bar k-1 closes 100.30 (0.30 % over the range high, too weak) and bar k closes
100.50 (0.50 %) on 3x volume. With k = 56 the signal bar opens 13:55 and enters at its 14:00 close.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from engine.bars import Bars
from engine.domain import AssetClass, Interval, Side
from engine.indicators import MarketContext
from engine.strategies.defining_order import DefiningOrderBreakout, DefiningOrderParams
from engine.strategy import build_strategy
from tests.builders import make_bars, make_context

K = 56  # bar opening 13:55 IST, entering at 14:00
LAST_ALLOWED = 69  # bar opening 15:00 IST, entering at 15:05 = 15:30 - 25 min
BARS_PER_DAY = 75
RANGE_BARS = 12
MONDAY_OPEN = datetime(2025, 1, 6, 3, 45, tzinfo=UTC)  # 09:15 IST


def day_prices(k: int = K, signal_close: float = 100.5) -> tuple[np.ndarray, ...]:
    """Open, high, low, close and volume of one base session with the breakout on bar `k`."""
    i = np.arange(BARS_PER_DAY)
    zig = np.where(i % 2 == 0, 0.15, -0.15)
    close = 99.3 + 0.4 * i / k + zig
    close[k - 1] = 100.3
    close[k] = signal_close
    close[k + 1 :] = 100.6 + zig[k + 1 :]
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + 0.05
    low = np.minimum(open_, close) - 0.05
    high[:RANGE_BARS] = np.minimum(high[:RANGE_BARS], 99.95)
    low[:RANGE_BARS] = np.maximum(low[:RANGE_BARS], 99.05)
    high[5] = 100.0
    low[3] = 99.0
    volume = np.full(BARS_PER_DAY, 1000.0)
    volume[k] = 3000.0
    return open_, high, low, close, volume


def build(
    *,
    k: int = K,
    signal_close: float = 100.5,
    first_bar: int = 0,
    mirror: bool = False,
    edit: dict[str, dict[int, float]] | None = None,
    symbol: str = "RELIANCE",
) -> MarketContext:
    """Context over the base session from bar `first_bar` on; `mirror` reflects prices to 200 - p (a short)."""
    open_, high, low, close, volume = day_prices(k, signal_close)
    arrays = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    for name, changes in (edit or {}).items():
        for index, value in changes.items():
            arrays[name][index] = value
    if mirror:
        arrays = {
            "open": 200.0 - arrays["open"],
            "high": 200.0 - arrays["low"],
            "low": 200.0 - arrays["high"],
            "close": 200.0 - arrays["close"],
            "volume": arrays["volume"],
        }
    times = [MONDAY_OPEN + timedelta(minutes=5 * j) for j in range(first_bar, BARS_PER_DAY)]
    bars = make_bars(
        arrays["close"][first_bar:],
        open=arrays["open"][first_bar:],
        high=arrays["high"][first_bar:],
        low=arrays["low"][first_bar:],
        volume=arrays["volume"][first_bar:],
        times=times,
    )
    return make_context(bars, symbol)


def strategy(**overrides: object) -> DefiningOrderBreakout:
    params = {"bias_sma": 3, **overrides}
    return DefiningOrderBreakout(DefiningOrderParams(**params))  # type: ignore[arg-type]


def fired(ctx: MarketContext, **overrides: object) -> list[int]:
    return strategy(**overrides).signals(ctx).fired().tolist()


def test_base_scenario_preconditions_hold() -> None:
    ctx = build()
    bars = ctx.bars
    assert ctx.bars.bar_time(K) == datetime(2025, 1, 6, 8, 25, tzinfo=UTC)  # 13:55 IST
    assert bars.high[:RANGE_BARS].max() == 100.0
    assert bars.low[:RANGE_BARS].min() == 99.0
    assert bars.close[RANGE_BARS : K - 1].max() < 100.0
    htf = ctx.higher(Interval.H1)
    last_closed = htf.index[K]
    assert htf.bars.close[last_closed] > htf.ind.sma(3)[last_closed]
    assert 30 <= ctx.ind.rsi(14)[K] <= 70


def test_long_fires_on_the_breakout_bar_not_one_bar_earlier() -> None:
    ctx = build()
    signals = strategy().signals(ctx)
    assert signals.fired().tolist() == [K]
    assert signals.direction[K - 1] == 0
    assert signals.direction[K] == 1


def test_the_bar_before_fails_on_strength_even_without_blocked_hours() -> None:
    # Bar k-1 closes 0.30 % above the range high: under the 0.4 % minimum, so k is still the first even with
    # the volume k-1 would need; a 0.25 % minimum lets k-1 fire.
    loud_before = build(edit={"volume": {K - 1: 3000.0}})
    assert fired(loud_before, blocked_hours=()) == [K]
    assert fired(loud_before, blocked_hours=(), min_breakout_pct=0.25) == [K - 1]


def test_long_stop_at_range_high_and_target_at_two_r() -> None:
    signals = strategy().signals(build())
    assert signals.entry[K] == 100.5
    assert signals.stop[K] == 100.0
    assert signals.target[K] == 101.5
    assert np.isnan(signals.entry[K - 1]) and np.isnan(signals.stop[K + 1]) and np.isnan(signals.target[0])


def test_reward_risk_sets_the_target() -> None:
    signals = strategy(reward_risk=3.0).signals(build())
    assert signals.target[K] == 100.5 + 3.0 * 0.5


def test_short_mirror_fires_with_stop_at_range_low() -> None:
    ctx = build(mirror=True)
    assert ctx.bars.low[:RANGE_BARS].min() == 100.0
    signals = strategy().signals(ctx)
    assert signals.fired().tolist() == [K]
    assert signals.direction[K] == -1
    assert signals.direction[K - 1] == 0
    assert signals.entry[K] == 99.5
    assert signals.stop[K] == 100.0
    assert signals.target[K] == 98.5


def test_opposite_bias_blocks_the_long() -> None:
    # Raising the closes ending 1h bins 1 and 2 (bars 23 and 35) puts the 3-period SMA above the last 1h close.
    ctx = build(edit={"close": {23: 99.95, 35: 99.95}, "high": {23: 100.0, 35: 100.0}})
    htf = ctx.higher(Interval.H1)
    last_closed = htf.index[K]
    assert htf.bars.close[last_closed] < htf.ind.sma(3)[last_closed]
    assert 30 <= ctx.ind.rsi(14)[K] <= 70
    assert fired(ctx) == []


def test_no_bias_before_the_sma_exists() -> None:
    # A 50-period 1h SMA needs weeks of bars; one session never has a bias.
    assert DefiningOrderBreakout().signals(build()).fired().tolist() == []


def test_weak_breakout_is_blocked_and_the_minimum_is_inclusive() -> None:
    assert fired(build(signal_close=100.35)) == []
    assert fired(build(signal_close=100.35), min_breakout_pct=0.3) == [K]
    assert fired(build(signal_close=100.4)) == [K]


def test_rsi_outside_the_band_blocks() -> None:
    ctx = build()
    rsi = float(ctx.ind.rsi(14)[K])
    assert fired(ctx, rsi_high=math.floor(rsi)) == []
    assert fired(ctx, rsi_high=math.ceil(rsi)) == [K]
    assert fired(ctx, rsi_low=math.ceil(rsi)) == []
    assert fired(ctx, rsi_low=math.floor(rsi)) == [K]


def test_late_entry_needs_volume_and_the_next_qualifying_bar_fires_instead() -> None:
    # Mean of the last 20 volumes at k: (19 x 1000 + 1500) / 20 = 1025; 1.5 x 1025 = 1537.5 > 1500.
    ctx = build(edit={"volume": {K: 1500.0, K + 1: 3000.0}})
    assert fired(ctx) == [K + 1]
    assert fired(build(edit={"volume": {K: 1500.0}})) == []


def test_volume_rule_applies_only_to_late_entries() -> None:
    # Entry at 14:00 is 225 min after the range ends at 10:15: late only if 225 > late_entry_minutes.
    low_volume = build(edit={"volume": {K: 1000.0}})
    assert fired(low_volume) == []
    assert fired(low_volume, late_entry_minutes=224) == []
    assert fired(low_volume, late_entry_minutes=225) == [K]


def test_instrument_without_volume_skips_the_volume_rule() -> None:
    no_volume = {"volume": dict.fromkeys(range(BARS_PER_DAY), 0.0)}
    assert fired(build(edit=no_volume, symbol="NIFTY50")) == [K]
    # An instrument that should have volume gets no confirmation from a bar that traded nothing.
    assert fired(build(edit=no_volume)) == []


def test_blocked_hours_are_judged_on_the_entry_time_inclusively() -> None:
    ctx = build()
    assert fired(ctx, blocked_hours=("13:00-14:00",)) == []
    # Bar k opens 13:55 but enters at 14:00, outside 13:55-13:59.
    assert fired(ctx, blocked_hours=("13:55-13:59",)) == [K]
    assert fired(ctx, blocked_hours=("09:00-09:59", "14:00-14:00")) == []


def test_no_entry_in_the_last_minutes_of_the_session() -> None:
    assert fired(build(k=LAST_ALLOWED)) == [LAST_ALLOWED]
    assert fired(build(k=LAST_ALLOWED + 1)) == []
    assert fired(build(k=LAST_ALLOWED + 1), last_entry_minutes_before_close=20) == [LAST_ALLOWED + 1]


def test_day_without_enough_range_bars_has_no_range() -> None:
    # Data from 09:25 leaves 10 of 12 range bars (>= 80 %); from 09:30 only 9 (75 %).
    assert fired(build(first_bar=2)) == [K - 2]
    assert fired(build(first_bar=3)) == []
    assert fired(build(first_bar=3), min_range_coverage=0.75) == [K - 3]


def test_range_levels_never_include_post_range_bars() -> None:
    # A post-range bar's high above the signal close must not move the range high.
    ctx = build(edit={"high": {20: 101.0}})
    signals = strategy().signals(ctx)
    assert signals.fired().tolist() == [K]
    assert signals.stop[K] == 100.0


def test_at_most_one_signal_per_side_per_day() -> None:
    ctx = build(edit={"volume": {K + 1: 3000.0, K + 2: 3000.0}})
    assert fired(ctx) == [K]


def test_each_session_day_gets_its_own_first_signal() -> None:
    open_, high, low, close, volume = day_prices()
    times = [MONDAY_OPEN + timedelta(days=d, minutes=5 * j) for d in (0, 1) for j in range(BARS_PER_DAY)]
    bars = make_bars(
        np.tile(close, 2),
        open=np.tile(open_, 2),
        high=np.tile(high, 2),
        low=np.tile(low, 2),
        volume=np.tile(volume, 2),
        times=times,
    )
    ctx = make_context(bars)
    assert 30 <= ctx.ind.rsi(14)[BARS_PER_DAY + K] <= 70
    assert fired(ctx) == [K, BARS_PER_DAY + K]


def test_blacklisted_symbol_never_fires() -> None:
    assert fired(build(), blacklist=("RELIANCE",)) == []
    assert fired(build(), blacklist=("TCS",)) == [K]


def test_output_at_each_bar_ignores_later_bars() -> None:
    s = strategy()
    for ctx in (build(), build(mirror=True), build(edit={"volume": {K: 1500.0, K + 1: 3000.0}})):
        full = s.signals(ctx)
        for t in range(len(ctx)):
            head = s.signals(MarketContext(ctx.instrument, ctx.bars.head(t + 1), ctx.calendar))
            assert head.direction[t] == full.direction[t], t
            for name in ("entry", "stop", "target"):
                np.testing.assert_array_equal(getattr(head, name)[t], getattr(full, name)[t])


def test_explain_gives_the_rule_numbers() -> None:
    ctx = build()
    s = strategy()
    htf = ctx.higher(Interval.H1)
    last_closed = htf.index[K]
    bias_close, bias_sma = htf.bars.close[last_closed], htf.ind.sma(3)[last_closed]
    ratio = 3000.0 / ((19 * 1000.0 + 3000.0) / 20)
    assert s.explain(ctx, K, Side.LONG) == (
        "close 100.50 broke 60-min range high 100.00 by 0.50%",
        f"1h bias up: close {bias_close:.2f} > SMA3 {bias_sma:.2f}",
        f"RSI {ctx.ind.rsi(14)[K]:.0f}",
        f"late entry 225 min after range: volume {ratio:.1f}x 20-bar mean",
    )


def test_explain_short_and_without_volume() -> None:
    reasons = strategy().explain(build(mirror=True, symbol="NIFTY50"), K, Side.SHORT)
    assert reasons[0] == "close 99.50 broke 60-min range low 100.00 by 0.50%"
    assert reasons[1].startswith("1h bias down: close ")
    assert reasons[3] == "no volume data: late-entry volume rule skipped"


def test_empty_bars_give_no_signals() -> None:
    ctx = build()
    empty = MarketContext(ctx.instrument, ctx.bars.head(0), ctx.calendar)
    assert len(strategy().signals(empty).direction) == 0


@pytest.mark.parametrize(
    ("asset_class", "interval", "expected"),
    [
        (AssetClass.EQUITY, Interval.M5, True),
        (AssetClass.ETF, Interval.M15, True),
        (AssetClass.INDEX, Interval.M1, True),
        (AssetClass.EQUITY, Interval.M30, False),
        (AssetClass.EQUITY, Interval.H1, False),
        (AssetClass.EQUITY, Interval.D1, False),
        (AssetClass.FX, Interval.M5, False),
        (AssetClass.CRYPTO, Interval.M5, False),
        (AssetClass.METAL, Interval.M15, False),
    ],
)
def test_applies_to_intraday_equities_etfs_and_indices(
    asset_class: AssetClass, interval: Interval, expected: bool
) -> None:
    instrument = dataclasses.replace(build().instrument, asset_class=asset_class, interval=interval)
    assert DefiningOrderBreakout().applies_to(instrument) is expected


def test_warmup_covers_the_hourly_sma() -> None:
    assert DefiningOrderBreakout().warmup == 50 * 12
    assert strategy(bias_sma=20).warmup == 240


@pytest.mark.parametrize("windows", [("10-14",), ("10:00-14",), ("25:00-26:00",), ("10:60-11:00",), ("14:00-10:00",)])
def test_malformed_blocked_hours_are_rejected(windows: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="blocked_hours"):
        DefiningOrderParams(blocked_hours=windows)


def test_blocked_hours_must_be_a_tuple() -> None:
    with pytest.raises(ValueError, match="blocked_hours"):
        DefiningOrderParams(blocked_hours=["10:00-13:59"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"range_minutes": 0}, "range_minutes"),
        ({"bias_sma": 2.5}, "bias_sma"),
        ({"min_range_coverage": 0.0}, "min_range_coverage"),
        ({"rsi_low": 75.0}, "rsi_low"),
        ({"late_volume_mult": -1.0}, "late_volume_mult"),
        ({"reward_risk": 0.0}, "reward_risk"),
    ],
)
def test_invalid_params_name_the_param(overrides: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        DefiningOrderParams(**overrides)  # type: ignore[arg-type]


def test_registered_and_buildable_by_name() -> None:
    s = build_strategy("defining_order", {"min_breakout_pct": 0.5, "blacklist": ("SBIN",)})
    assert isinstance(s, DefiningOrderBreakout)
    assert s.params.min_breakout_pct == 0.5
    space = DefiningOrderParams.search_space()
    assert space["range_minutes"] == (15, 120, 15)
    assert "blocked_hours" not in space and "blacklist" not in space


def test_bars_outside_the_session_never_fire() -> None:
    # A bar opening 15:30 IST (after the close) with a strong close is outside every entry window.
    ctx = build(k=LAST_ALLOWED + 1)
    bars = ctx.bars
    extra = Bars(
        bars.interval,
        np.r_[bars.time, bars.time[-1] + Interval.M5.nanos],
        np.r_[bars.open, 100.6],
        np.r_[bars.high, 101.5],
        np.r_[bars.low, 100.5],
        np.r_[bars.close, 101.4],
        np.r_[bars.volume, 5000.0],
    )
    assert fired(MarketContext(ctx.instrument, extra, ctx.calendar), blocked_hours=()) == []
