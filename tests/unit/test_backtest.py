"""The backtester on hand-built bars: entries, exits, costs, sizing, position rules and the equity curve.

Instrument: RELIANCE (tick 0.05, lot 1 share, XNSE 09:15-15:30 IST) on 5-minute bars starting Monday
2025-01-06 09:15 IST, with its spread set to 0 unless a test says otherwise, so prices are easy to follow.
A test-only strategy (not registered) fires exactly where each test says.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from engine.backtest import SKIP_WARMUP, BacktestConfig, BacktestResult, backtest, simulate
from engine.bars import from_nanos
from engine.costs import CostModel
from engine.domain import Interval, ScoredSetup, Side
from engine.exits import StopTrigger
from engine.indicators import MarketContext
from engine.pipeline import EngineConfig
from engine.sizing import RateHistory, SizeLimits, Sizing
from engine.strategy import REGISTRY, SignalArrays, Strategy, StrategyParams
from engine.trade_book import (
    SKIP_GAP_STOP,
    SKIP_GAP_TARGET,
    SKIP_IN_POSITION,
    SKIP_NO_ATR,
    SKIP_NO_NEXT_BAR,
    SKIP_STALE,
    SKIP_ZERO_SIZE,
)
from engine.trading import ExitReason, TradeKind
from tests.builders import make_bars, make_context

D = Decimal
T0 = datetime(2025, 1, 6, 3, 45, tzinfo=UTC)  # 09:15 IST, Monday
FIVE = timedelta(minutes=5)
Row = tuple[float, float, float, float]  # open, high, low, close
QUIET: Row = (100.0, 100.5, 99.5, 100.0)
NO_COSTS = BacktestConfig(score_setups=False)


class Scripted(Strategy[StrategyParams]):
    """Fires at the bars it is given: bar index -> (side, entry, stop, target)."""

    name = "scripted"
    params_type = StrategyParams

    def __init__(self, fires: Mapping[int, tuple[Side, float, float, float]], warmup: int = 1) -> None:
        super().__init__()
        self.fires = dict(fires)
        self._warmup = warmup

    @property
    def warmup(self) -> int:
        return self._warmup

    def signals(self, ctx: MarketContext) -> SignalArrays:
        out = SignalArrays.none(len(ctx))
        for i, (side, entry, stop, target) in self.fires.items():
            if i < len(ctx):
                out.direction[i] = side.sign
                out.entry[i], out.stop[i], out.target[i] = entry, stop, target
        return out

    def explain(self, ctx: MarketContext, i: int, side: Side) -> tuple[str, ...]:
        return (f"scripted {side} at bar {i}",)


def long_at(*bars: int, stop: float = 95.0, target: float = 110.0) -> Scripted:
    return Scripted({i: (Side.LONG, 100.0, stop, target) for i in bars})


def context(rows: Sequence[Row], *, spread: str = "0", times: Sequence[datetime] | None = None) -> MarketContext:
    o, h, lo, c = (list(col) for col in zip(*rows, strict=True))
    return make_context(make_bars(c, open=o, high=h, low=lo, times=times), "RELIANCE", spread=D(spread))


def run(ctx: MarketContext, strategy: Strategy[StrategyParams], config: BacktestConfig = NO_COSTS) -> BacktestResult:
    return backtest(ctx, strategy, EngineConfig(), config)


def close_time(i: int) -> datetime:
    return T0 + FIVE * (i + 1)


def test_the_test_strategy_is_not_registered() -> None:
    assert "scripted" not in REGISTRY


def test_stop_and_target_in_the_same_bar_takes_the_stop() -> None:
    rows = [QUIET] * 3 + [QUIET, (100.0, 111.0, 94.0, 100.0), QUIET]
    result = run(context(rows), long_at(2))
    (bt,) = result.trades
    t = bt.trade
    # 1% of 10,000 = 100 at risk over a 5.00 stop distance: 20 shares.
    assert (bt.signal_index, bt.entry_index, bt.exit_index) == (2, 3, 4)
    assert (t.kind, t.exit_reason, t.entry_price, t.exit_price, t.quantity) == (
        TradeKind.BACKTEST,
        ExitReason.STOP,
        D("100.00"),
        D("95.00"),
        D(20),
    )
    assert t.entry_time == T0 + 3 * FIVE and t.exit_time == close_time(4)
    assert (t.pnl, t.pnl_r) == (D(-100), D("-1.00"))


def test_a_gap_through_the_stop_fills_at_the_open_not_the_stop() -> None:
    rows = [QUIET] * 4 + [(93.0, 94.0, 92.0, 93.5), QUIET]
    (bt,) = run(context(rows), long_at(2)).trades
    assert (bt.trade.exit_reason, bt.trade.exit_price, bt.exit_index) == (ExitReason.STOP, D("93.00"), 4)
    assert (bt.trade.pnl, bt.trade.pnl_r) == (D(-140), D("-1.40"))  # 20 x (93 - 100): worse than -1R


def test_the_signal_bars_own_high_never_reaches_the_target_and_entry_is_the_next_open() -> None:
    rows = [
        QUIET,
        QUIET,
        (100.0, 112.0, 99.5, 100.0),  # 2: signal bar; its high is above the target but it is before entry
        (100.5, 105.0, 100.0, 104.0),  # 3: entry at this open, 100.50
        (104.0, 110.5, 103.0, 109.0),  # 4: target 110 reached
    ]
    (bt,) = run(context(rows), long_at(2)).trades
    t = bt.trade
    assert (bt.entry_index, t.entry_price, t.entry_time) == (3, D("100.50"), T0 + 3 * FIVE)
    assert t.entry_time >= bt.setup.bar_time + FIVE  # never at or before the signal bar's close
    # Sized as the desk sizes, on the setup's entry: 100 risk / 5.00 to the stop = 20 shares; the fill at 100.50
    # then risks 110 (1.1 x the budget); (110 - 100.5) x 20 = 190.
    assert (t.exit_reason, t.exit_price, bt.exit_index, t.quantity, t.pnl) == (
        ExitReason.TARGET,
        D("110.00"),
        4,
        D(20),
        D(190),
    )
    assert (bt.budget_risk, bt.initial_risk, bt.notional, bt.currency) == (
        D("100.00"),
        D("110.00"),
        D("2000.00"),
        "INR",
    )


def test_the_entry_bar_itself_can_reach_the_target_after_its_open() -> None:
    rows = [QUIET] * 3 + [(100.0, 110.0, 99.0, 109.0), QUIET]
    (bt,) = run(context(rows), long_at(2)).trades
    assert (bt.entry_index, bt.exit_index, bt.trade.exit_reason) == (3, 3, ExitReason.TARGET)


def test_spread_slippage_and_commission_are_exact_to_the_tick_and_the_cent() -> None:
    costs = CostModel(slippage_bps=D(10), commission_bps=D(3), commission_per_order=D(20))
    rows = [QUIET] * 3 + [QUIET, (100.0, 111.0, 100.0, 110.5)]
    (bt,) = run(context(rows, spread="0.05"), long_at(2), BacktestConfig(costs=costs, score_setups=False)).trades
    t = bt.trade
    # Buy at the open 100: ask 100.025 -> 100.05 (ceil to 0.05); x 1.001 = 100.15005 -> 100.20.
    assert t.entry_price == D("100.20")
    # Sized on the setup's entry, as the desk, with the round trip's expected costs inside the 100 risked: per
    # share 5 to the stop + 0.05 spread + 13 bps of (100 + 95) = 5.3035, and 2 x 20 per order: 60 / 5.3035 = 11.
    # Fee 100.20 x 11 x 0.0003 + 20 = 20.3306 -> 20.33.
    assert (t.quantity, t.entry_fees) == (D(11), D("20.33"))
    assert bt.budget_risk == D("98.34")  # 11 x 5.3035 + 40
    # Sell at the target 110: bid 109.975 -> 109.95 (floor); x 0.999 = 109.84005 -> 109.80.
    # Fee 109.80 x 11 x 0.0003 + 20 = 20.3623 -> 20.36.
    assert (t.exit_reason, t.exit_price, t.exit_fees) == (ExitReason.TARGET, D("109.80"), D("20.36"))
    # (109.80 - 100.20) x 11 - 20.33 - 20.36 = 64.91; risk at the fill 5.20 x 11 = 57.20; 1.1348 -> 1.13R.
    assert (t.pnl, t.pnl_r) == (D("64.91"), D("1.13"))


def test_atr_slippage_moves_both_fills_against_the_trader_by_a_fraction_of_atr14() -> None:
    # Every bar has a true range of 1.00, so ATR(14) is exactly 1.00 from bar 14 on.
    rows = [QUIET] * 16 + [(100.0, 111.0, 100.0, 110.5)]
    config = BacktestConfig(slippage_atr=0.1, score_setups=False)
    (bt,) = run(context(rows), long_at(15), config).trades
    # 0.1 x ATR 1.00 = 0.10: buy 100 + 0.10, sell the target 110 - 0.10.
    assert (bt.trade.entry_price, bt.trade.exit_price) == (D("100.10"), D("109.90"))


def test_atr_slippage_is_rounded_up_to_the_tick() -> None:
    rows = [QUIET] * 16 + [(100.0, 111.0, 100.0, 110.5)]
    config = BacktestConfig(slippage_atr=0.06, score_setups=False)  # 0.06 -> 0.10 at a 0.05 tick
    (bt,) = run(context(rows), long_at(15), config).trades
    assert (bt.trade.entry_price, bt.trade.exit_price) == (D("100.10"), D("109.90"))


def test_a_strategy_that_loses_every_trade_shows_its_real_drawdown() -> None:
    stopped: Row = (100.0, 100.5, 94.0, 95.0)
    rows = [QUIET] * 3 + [stopped] + [QUIET] * 2 + [stopped] + [QUIET] * 2 + [stopped, QUIET]
    result = run(context(rows), long_at(2, 5, 8))
    pnls = [bt.trade.pnl for bt in result.trades]
    # Equity compounds: 20 shares (risk 100 of 10,000), then 19 (99.00 of 9,900), then 19 (98.05 of 9,805).
    assert [bt.trade.quantity for bt in result.trades] == [D(20), D(19), D(19)]
    assert pnls == [D(-100), D(-95), D(-95)]
    m = result.metrics
    assert (m.trades, m.wins, m.losses, m.win_rate, m.expectancy_r) == (3, 0, 3, D(0), D("-1.00"))
    assert m.profit_factor == D("0.00")  # nothing gained, something lost: 0, not None
    assert m.net_pnl == D(-290)
    assert m.final_equity == pytest.approx(9710.0)
    assert m.max_drawdown == pytest.approx((10_000 - 9_710) / 10_000)
    assert m.max_drawdown > 0 and m.total_return == pytest.approx(-0.029)
    assert result.equity.equity[-1] == pytest.approx(9710.0)
    assert float(np.min(result.equity.equity)) == pytest.approx(9710.0)


def test_the_equity_curve_marks_an_open_position_to_market_at_each_close() -> None:
    costs = CostModel(commission_per_order=D(1))
    rows = [QUIET] * 3 + [(100.0, 100.5, 97.0, 98.0), (98.0, 110.0, 98.0, 109.0), QUIET]
    result = run(context(rows), long_at(2), BacktestConfig(costs=costs, score_setups=False))
    curve = result.equity
    (bt,) = result.trades
    assert bt.trade.quantity == D(19)  # (100 - 2 x 1.00 of fees) / 5 to the stop = 19.6
    # Bars 0-2 flat; bar 3 holds 19 shares bought at 100 with a 1.00 fee, closing at 98; bar 4 exits at 110.
    assert list(curve.equity) == pytest.approx([10_000, 10_000, 10_000, 10_000 - 38 - 1, 10_000 + 190 - 2, 10_188])
    assert list(curve.realized) == pytest.approx([10_000] * 4 + [10_188, 10_188])
    assert list(curve.in_position) == [False, False, False, True, True, False]
    assert result.metrics.exposure == pytest.approx(2 / 6)
    assert result.metrics.max_drawdown == pytest.approx(39 / 10_000)


def test_one_position_per_symbol_skips_signals_while_in_a_position_and_counts_them() -> None:
    rows = [QUIET] * 3 + [QUIET, QUIET, QUIET, (100.0, 100.5, 94.0, 95.0)] + [QUIET] * 3 + [(100, 111, 99, 110)]
    # Position 3..6 (stopped at bar 6). Signal 4 is inside it; signal 6 fires at the close of the exit bar: flat.
    strategy = long_at(2, 4, 6)
    result = run(context(rows), strategy)
    assert [(bt.signal_index, bt.entry_index, bt.exit_index) for bt in result.trades] == [(2, 3, 6), (6, 7, 10)]
    assert dict(result.skips) == {SKIP_IN_POSITION: 1}
    assert len(result.setups) == 2  # the skipped signal is never validated

    overlapping = run(context(rows), strategy, BacktestConfig(one_position_per_symbol=False, score_setups=False))
    assert [bt.signal_index for bt in overlapping.trades] == [2, 4, 6]
    assert dict(overlapping.skips) == {}


def test_time_exit_closes_at_the_close_of_the_last_bar_held() -> None:
    rows = [QUIET] * 3 + [QUIET, QUIET, (100.0, 101.0, 99.0, 100.7), QUIET]
    config = BacktestConfig(max_hold_bars=3, score_setups=False)
    (bt,) = run(context(rows), long_at(2), config).trades
    # Held bars 3, 4 and 5: exits at bar 5's close, 100.70, reported at that bar's close time.
    assert (bt.exit_index, bt.trade.exit_reason, bt.trade.exit_price) == (5, ExitReason.TIME, D("100.70"))
    assert bt.trade.exit_time == close_time(5)


def _two_sessions() -> tuple[list[Row], list[datetime]]:
    day1 = [T0 + FIVE * k for k in range(75)]  # 09:15 .. 15:25 IST
    day2 = [T0 + timedelta(days=1) + FIVE * k for k in range(5)]
    rows = [QUIET] * 71 + [(100.0, 100.5, 99.5, 101.3)] + [QUIET] * 8
    return rows, day1 + day2


def test_session_end_exit_closes_an_intraday_position_at_the_sessions_last_bar() -> None:
    rows, times = _two_sessions()
    (bt,) = run(context(rows, times=times), long_at(70)).trades
    # XNSE intraday positions are flat at 15:15 IST: the last bar held is the 15:10 bar, index 71.
    assert (bt.entry_index, bt.exit_index, bt.trade.exit_reason) == (71, 71, ExitReason.SESSION_END)
    assert bt.trade.exit_price == D("101.30")
    assert bt.trade.exit_time == datetime(2025, 1, 6, 9, 45, tzinfo=UTC)  # 15:15 IST, the flat time


def test_without_session_end_exit_the_position_is_carried_and_reported_open_at_the_end() -> None:
    rows, times = _two_sessions()
    result = run(context(rows, times=times), long_at(70), BacktestConfig(session_end_exit=False, score_setups=False))
    assert result.trades == ()
    (still,) = result.open_trades
    assert still.trade.is_open and still.exit_index is None and still.entry_index == 71
    assert result.metrics.trades == 0  # open trades are not in the trade metrics ...
    assert result.equity.equity[-1] == pytest.approx(10_000.0)  # ... but are marked to market (close 100)
    assert result.equity.in_position[-1]


def test_a_position_too_small_for_the_risk_budget_is_skipped_with_its_reason() -> None:
    rows = [QUIET] * 3 + [QUIET, (100.0, 111.0, 100.0, 110.0)]
    result = run(context(rows), long_at(2), BacktestConfig(equity=D(400), score_setups=False))
    # 1% of 400 = 4.00 cannot pay for one share with a 5.00 stop distance.
    assert result.trades == () and result.open_trades == ()
    assert dict(result.skips) == {SKIP_ZERO_SIZE: 1}
    assert len(result.setups) == 1 and result.equity.equity[-1] == pytest.approx(400.0)


def test_an_entry_bar_opening_through_the_stop_is_not_entered() -> None:
    rows = [QUIET] * 3 + [(94.0, 96.0, 93.0, 95.5), QUIET]
    result = run(context(rows), long_at(2))
    assert result.trades == () and dict(result.skips) == {SKIP_GAP_STOP: 1}


def test_an_entry_bar_opening_through_the_target_is_not_entered() -> None:
    rows = [QUIET] * 3 + [(110.5, 111.0, 109.0, 110.0), QUIET]
    result = run(context(rows), long_at(2))
    assert result.trades == () and dict(result.skips) == {SKIP_GAP_TARGET: 1}


def test_a_data_gap_after_the_signal_makes_the_setup_stale_but_a_night_does_not() -> None:
    # Bars 0-3 at 09:15-09:30; bar 4 only at 10:30 (a 55-minute hole in an open market); then a night.
    times = [T0 + FIVE * k for k in range(4)] + [T0 + timedelta(minutes=75)]
    times += [datetime(2025, 1, 6, 9, 55, tzinfo=UTC), datetime(2025, 1, 7, 3, 45, tzinfo=UTC)]
    rows = [QUIET] * 6 + [(100.0, 111.0, 100.0, 110.0)]
    result = run(context(rows, times=times), long_at(3, 5))
    assert dict(result.skips) == {SKIP_STALE: 1}  # bar 3: 55 min of market time > 2 bars (10 min)
    (bt,) = result.trades  # bar 5 closes at the 15:30 bell; the next open, 09:15 next day, is 0 market minutes later
    assert (bt.signal_index, bt.entry_index, bt.trade.entry_time) == (5, 6, times[6])


def test_atr_slippage_needs_atr_at_the_signal_bar() -> None:
    rows = [QUIET] * 6
    result = run(context(rows), long_at(2), BacktestConfig(slippage_atr=0.1, score_setups=False))
    assert result.trades == () and dict(result.skips) == {SKIP_NO_ATR: 1}


def test_a_signal_on_the_last_bar_has_nothing_to_enter_on() -> None:
    result = run(context([QUIET] * 4), long_at(3))
    assert result.trades == () and result.open_trades == ()
    assert dict(result.skips) == {SKIP_NO_NEXT_BAR: 1}


def test_short_positions_mirror_longs() -> None:
    rows = [QUIET] * 3 + [QUIET, (100.0, 101.0, 89.0, 90.0)]
    strategy = Scripted({2: (Side.SHORT, 100.0, 105.0, 90.0)})
    (bt,) = run(context(rows), strategy).trades
    assert (bt.trade.side, bt.trade.exit_reason, bt.trade.exit_price, bt.trade.pnl) == (
        Side.SHORT,
        ExitReason.TARGET,
        D("90.00"),
        D(200),
    )


def test_invalid_setups_are_rejected_by_the_live_validation_and_counted_by_rule() -> None:
    rows = [QUIET] * 8
    strategy = Scripted(
        {
            1: (Side.LONG, 100.0, 99.95, 110.0),  # one tick of stop: under the 3-tick minimum
            3: (Side.LONG, 100.0, 99.90, 110.0),  # two ticks
            5: (Side.LONG, 100.0, 101.0, 110.0),  # stop above entry
        }
    )
    result = run(context(rows), strategy)
    assert result.trades == () and result.setups == () and result.rejections == 3
    reasons = dict(result.rejection_reasons)
    assert reasons["stop distance # is under # ticks (#)"] == 2
    assert reasons["stop # is not below entry # for a long"] == 1
    assert result.top_rejections(1) == (("stop distance # is under # ticks (#)", 2),)


def test_signals_outside_the_window_or_inside_the_warmup_are_not_traded() -> None:
    target_bar: Row = (100.0, 111.0, 99.0, 110.0)
    rows = [QUIET] * 8 + [target_bar] + [QUIET] * 4 + [target_bar] + [QUIET] * 6
    strategy = Scripted({i: (Side.LONG, 100.0, 95.0, 110.0) for i in (2, 6, 11, 15)}, warmup=4)
    result = backtest(context(rows), strategy, EngineConfig(), NO_COSTS, start=2, end=12)
    # Bar 2 is inside the warm-up (a live scan would see only 3 of the 4 bars it needs), bar 15 after the window.
    assert [(bt.signal_index, bt.exit_index) for bt in result.trades] == [(6, 8), (11, 13)]
    assert dict(result.skips) == {SKIP_WARMUP: 1}
    assert result.signals == 3
    # The curve covers the window [2, 12) and bars 12-13, which the last trade needed to reach its exit.
    assert (result.first_bar, result.last_bar) == (T0 + 2 * FIVE, T0 + 13 * FIVE)
    assert len(result.equity) == 12


def test_scoring_records_the_quality_score_and_its_components_at_entry() -> None:
    rows = [QUIET] * 3 + [QUIET, (100.0, 111.0, 100.0, 110.0)]
    result = run(context(rows), long_at(2), BacktestConfig())
    (bt,) = result.trades
    assert bt.score is not None and bt.score == result.scores[bt.setup.signal_id]
    assert bt.quality == bt.score.total and set(bt.components) == {c.name for c in bt.score.components}
    assert "reward_risk" in bt.components

    unscored = run(context(rows), long_at(2))
    assert unscored.trades[0].score is None and unscored.trades[0].components == {}
    assert unscored.scores == {}


def test_the_minimum_quality_score_rejects_like_the_live_scan() -> None:
    rows = [QUIET] * 3 + [QUIET, (100.0, 111.0, 100.0, 110.0)]
    result = backtest(context(rows), long_at(2), EngineConfig(min_score=99.0), BacktestConfig())
    assert result.trades == () and result.rejections == 1
    assert result.rejection_reasons[0][0] == "quality # is below the minimum #"
    with pytest.raises(ValueError, match="score_setups=False cannot apply the engine's minimum quality score 99"):
        backtest(context(rows), long_at(2), EngineConfig(min_score=99.0), NO_COSTS)


def test_simulate_on_the_setups_makes_the_same_trades_as_backtest() -> None:
    rows = [QUIET] * 3 + [QUIET, QUIET, QUIET, (100.0, 100.5, 94.0, 95.0)] + [QUIET] * 3 + [(100, 111, 99, 110)]
    ctx = context(rows)
    config = BacktestConfig(costs=CostModel(slippage_bps=D(2), commission_per_order=D(1)))
    result = backtest(ctx, long_at(2, 4, 6), EngineConfig(), config)
    scored = [ScoredSetup(s, result.scores[s.signal_id]) for s in result.setups]
    assert simulate(ctx, scored, config).trades == result.trades
    moved = ScoredSetup(replace(scored[0].setup, bar_time=from_nanos(0)), scored[0].score)
    with pytest.raises(ValueError, match="bar 1970-01-01T00:00Z is not in the bars"):
        simulate(ctx, [moved], config)


def test_entry_hour_and_weekday_are_exchange_local() -> None:
    rows = [QUIET] * 3 + [QUIET, (100.0, 111.0, 100.0, 110.0)]
    (bt,) = run(context(rows), long_at(2)).trades
    assert (bt.entry_hour, bt.entry_weekday) == (9, 0)  # 09:30 IST on Monday


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"equity": D(0)}, "equity must be a positive finite Decimal"),
        ({"sizing": "1%"}, "sizing and rates must be a Sizing and a RateHistory"),
        ({"slippage_atr": -0.1}, "slippage_atr must be a finite fraction of ATR >= 0"),
        ({"max_hold_bars": 0}, "max_hold_bars must be at least 1 bar or None"),
    ],
)
def test_config_invariants_are_checked_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BacktestConfig(**kwargs)  # type: ignore[arg-type]


def test_window_and_applicability_are_checked() -> None:
    ctx = context([QUIET] * 5)
    with pytest.raises(ValueError, match="0 <= start <= end <= 5"):
        backtest(ctx, long_at(2), EngineConfig(), NO_COSTS, start=3, end=2)

    class NotHere(Scripted):
        def applies_to(self, instrument: object) -> bool:
            return False

    with pytest.raises(ValueError, match="scripted does not apply to RELIANCE 5m"):
        backtest(ctx, NotHere({}), EngineConfig(), NO_COSTS)


# --- Sizing in the account's currency, as the desk sizes ---------------------------------------------------------

USD_ACCOUNT = Sizing(account_currency="USD")


def test_an_nse_stock_is_sized_in_the_usd_account_at_the_linking_price() -> None:
    rows = [QUIET] * 3 + [QUIET, (100.0, 111.0, 99.0, 110.5)]
    config = BacktestConfig(sizing=USD_ACCOUNT, rates=RateHistory(fixed={"USDINR": D("84")}), score_setups=False)
    (bt,) = run(context(rows), long_at(2), config).trades
    # $100 at risk = INR 8,400 over a 5.00 stop: 1,680 shares (in INR the account of $10,000 would buy 20).
    assert bt.trade.quantity == D(1680)
    assert (bt.currency, bt.budget_risk, bt.notional) == ("USD", D("100.00"), D("2000.00"))  # 168,000 INR
    # +10.00 x 1,680 = INR 16,800 = $200.00, at the exit's rate.
    assert (bt.trade.pnl, bt.account_pnl, bt.trade.pnl_r) == (D("16800.00"), D("200.00"), D("2.00"))
    result = run(context(rows), long_at(2), config)
    assert result.metrics.net_pnl == D("200.00")
    assert result.equity.equity[-1] == pytest.approx(10_200.0)


def test_without_a_linking_price_nothing_is_traded_and_the_reason_names_the_pair() -> None:
    rows = [QUIET] * 6
    result = run(context(rows), long_at(2), BacktestConfig(sizing=USD_ACCOUNT, score_setups=False))
    assert result.trades == ()
    [(reason, count)] = result.skips
    assert count == 1
    assert "no INRUSD or USDINR price to convert INR into the USD account" in reason


def test_the_rate_of_the_moment_sizes_and_converts_each_trade() -> None:
    rows = [QUIET] * 3 + [QUIET, (100.0, 111.0, 99.0, 110.5)]
    usdinr = make_bars([80.0, 90.0], start=T0 - timedelta(hours=2), interval=Interval.H1)  # 90 from 03:45Z
    config = BacktestConfig(sizing=USD_ACCOUNT, rates=RateHistory(fixed={"USDINR": D("70")}, series={"USDINR": usdinr}))
    (bt,) = run(context(rows), long_at(2), replace(config, score_setups=False)).trades
    assert bt.trade.quantity == D(1800)  # $100 = INR 9,000 at the last close before the signal closed
    assert bt.account_pnl == D("200.00")  # INR 18,000 / 90
    assert RateHistory(fixed={"USDINR": D("70")}, series={"USDINR": usdinr}).prices_at(T0 - timedelta(hours=3)) == {
        "USDINR": D("70")
    }  # before the series' first bar closed: the configured price


def test_nifty_futures_trade_in_a_usd_account_instead_of_sizing_to_zero() -> None:
    rows = [(24000.0, 24010.0, 23990.0, 24000.0)] * 4 + [(24000.0, 24110.0, 23990.0, 24100.0)]
    nifty = make_context(
        make_bars([r[3] for r in rows], open=[r[0] for r in rows], high=[r[1] for r in rows], low=[r[2] for r in rows]),
        "NIFTY50",
        spread=D(0),
    )
    scripted = Scripted({2: (Side.LONG, 24000.0, 23950.0, 24100.0)})
    quote_money = run(nifty, scripted, BacktestConfig(score_setups=False))
    assert quote_money.trades == () and dict(quote_money.skips) == {SKIP_ZERO_SIZE: 1}  # INR 100 < one lot's 3,750
    usd = BacktestConfig(sizing=USD_ACCOUNT, rates=RateHistory(fixed={"USDINR": D("84")}), score_setups=False)
    (bt,) = run(nifty, scripted, usd).trades
    assert bt.trade.quantity == D(2)  # INR 8,400 / (50 x 75 per lot) = 2.24 -> 2 lots


def test_the_symbols_limits_cap_the_backtest_as_they_cap_the_desk() -> None:
    rows = [QUIET] * 3 + [QUIET, (100.0, 111.0, 99.0, 110.5)]
    capped = Sizing(limits={"RELIANCE": SizeLimits(max_quantity=D(12))})
    (bt,) = run(context(rows), long_at(2), BacktestConfig(sizing=capped, score_setups=False)).trades
    assert bt.trade.quantity == D(12)
    tiny = Sizing(limits={"RELIANCE": SizeLimits(min_quantity=D(50))})
    result = run(context(rows), long_at(2), BacktestConfig(sizing=tiny, score_setups=False))
    assert result.trades == () and dict(result.skips) == {"# is under the minimum size #": 1}


@dataclass(frozen=True)
class CloseStopParams(StrategyParams):
    stop_trigger: StopTrigger = StopTrigger.CLOSE


class ScriptedOnCloses(Scripted):
    """The scripted strategy whose rules check its stop on bar closes only."""

    params_type = CloseStopParams

    def __init__(self, fires: Mapping[int, tuple[Side, float, float, float]]) -> None:
        super().__init__(fires)
        self.params = CloseStopParams()


def test_a_strategy_declaring_close_only_stops_is_stopped_by_a_close_not_a_wick() -> None:
    rows = [QUIET] * 3 + [QUIET, (100.0, 101.0, 90.0, 100.0), (100.0, 100.5, 94.0, 94.5), QUIET]
    fires = {2: (Side.LONG, 100.0, 95.0, 110.0)}
    (touch,) = run(context(rows), Scripted(fires)).trades
    (close,) = run(context(rows), ScriptedOnCloses(fires)).trades
    assert (touch.exit_index, touch.trade.exit_price) == (4, D("95.00"))  # the wick stopped it at the level
    assert (close.exit_index, close.trade.exit_reason, close.trade.exit_price) == (5, ExitReason.STOP, D("94.50"))


class Counted(Scripted):
    """A scripted strategy that counts the reasons it is asked for (each `Setup` built asks once)."""

    def __init__(self, fires: Mapping[int, tuple[Side, float, float, float]]) -> None:
        super().__init__(fires)
        self.explained = 0

    def explain(self, ctx: MarketContext, i: int, side: Side) -> tuple[str, ...]:
        self.explained += 1
        return super().explain(ctx, i, side)


def three_trades() -> tuple[Counted, BacktestResult]:
    win: Row = (100.0, 111.0, 100.0, 110.5)
    rows = [QUIET] * 3 + [win] + [QUIET] * 3 + [win] + [QUIET] * 3 + [win, QUIET]
    strategy = Counted({i: (Side.LONG, 100.0, 95.0, 110.0) for i in (2, 6, 10)})
    return strategy, run(context(rows), strategy)


def test_trades_and_setups_are_built_when_first_read_and_then_kept() -> None:
    strategy, result = three_trades()
    assert (len(result.trades), len(result.setups), strategy.explained) == (3, 3, 0)
    assert result.metrics.trades == 3 and result.metrics.wins == 3  # measured from the records, nothing built
    assert result.equity.realized[-1] == 10_000 + 3 * 200
    assert strategy.explained == 0
    second = result.trades[1]
    assert strategy.explained == 1 and second.setup.reasons == ("scripted long at bar 6",)
    assert result.trades[1] is second and result.setups[1] is second.setup and strategy.explained == 1
    assert [t.trade.pnl for t in result.trades] == [D(200)] * 3 and strategy.explained == 3


def test_built_trades_compare_slice_and_pickle_as_a_tuple_of_them_would() -> None:
    strategy, result = three_trades()
    sent = pickle.dumps((result.trades, result.setups))
    assert strategy.explained == 3  # each setup is built to be sent: its builder holds the whole context
    trades, setups = pickle.loads(sent)
    assert trades == result.trades == tuple(result.trades) and result.trades == list(result.trades)
    assert setups == result.setups and result.trades != result.trades[:2]
    assert result.trades[1:] == tuple(result.trades)[1:] and result.trades[-1] == tuple(result.trades)[-1]
    assert [t.r for t in trades.records] == [t.trade.pnl_r for t in result.trades]
    assert b"numpy" not in sent and repr(result.trades) == repr(tuple(result.trades))
