"""Backtest metrics and score calibration, checked against numbers worked out by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from engine.domain import Interval, QualityScore, ScoreComponent, Setup, Side
from engine.metrics import (
    MIN_RETURN_DAYS,
    calibration,
    compute_metrics,
    quality_decile,
    sharpe_ratio,
    trading_days_per_year,
)
from engine.results import BacktestTrade, EquityCurve
from engine.trading import ExitReason, Trade, TradeKind

D = Decimal
DAY_NS = 86_400 * 1_000_000_000
START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def trade(
    k: int,
    exit_price: str,
    *,
    symbol: str = "AAA",
    score: float | None = None,
    hour: int = 10,
    weekday: int = 0,
    fees: str = "0",
) -> BacktestTrade:
    """A long of 10 units bought at 100 with its stop at 95 (50 at risk), exited at `exit_price`."""
    at = START + timedelta(hours=k)
    setup = Setup("s", symbol, Side.LONG, D(100), D(95), (D(110),), at, Interval.H1)
    quality = None if score is None else QualityScore(score, (ScoreComponent("reward_risk", 0.5, 1.0, "r"),))
    t = Trade(
        trade_id=setup.signal_id,
        signal_id=setup.signal_id,
        kind=TradeKind.BACKTEST,
        strategy="s",
        symbol=symbol,
        side=Side.LONG,
        quantity=D(10),
        contract_size=D(1),
        entry_time=at + timedelta(hours=1),
        entry_price=D(100),
        stop=D(95),
        target=D(110),
        entry_fees=D(fees),
        exit_time=at + timedelta(hours=2),
        exit_price=D(exit_price),
        exit_reason=ExitReason.TARGET if D(exit_price) >= 110 else ExitReason.STOP,
        exit_fees=D(0),
    )
    return BacktestTrade(t, setup, quality, 2 * k, 2 * k + 1, 2 * k + 1, hour, weekday)


def curve(
    equity: Sequence[float],
    *,
    days: Sequence[int] | None = None,
    in_position: Sequence[bool] | None = None,
    initial: float = 10_000.0,
    interval: Interval = Interval.D1,
    per_year: int = 252,
    times: Sequence[int] | None = None,
) -> EquityCurve:
    n = len(equity)
    return EquityCurve(
        initial=initial,
        interval=interval,
        time=np.asarray(times if times is not None else np.arange(n) * DAY_NS, dtype=np.int64),
        day=np.asarray(days if days is not None else np.arange(n), dtype=np.int64),
        equity=np.asarray(equity, dtype=np.float64),
        realized=np.asarray(equity, dtype=np.float64),
        in_position=np.asarray(in_position if in_position is not None else [False] * n, dtype=np.bool_),
        trading_days_per_year=per_year,
    )


FLAT = curve([10_000.0] * 5)


def test_trade_statistics_in_r_and_money() -> None:
    # R: +2 (exit 110), -1 (95), +1 (105), 0 (100, breakeven), -0.5 (97.5); risk 50 each.
    trades = [trade(0, "110"), trade(1, "95"), trade(2, "105"), trade(3, "100"), trade(4, "97.5")]
    m = compute_metrics(trades, FLAT)
    assert (m.trades, m.wins, m.losses, m.breakevens) == (5, 2, 2, 1)
    assert m.win_rate == D("0.4000")
    assert m.profit_factor == D("2.00")  # 3R gained / 1.5R lost
    assert m.expectancy_r == D("0.30")  # 1.5R / 5
    assert (m.average_win_r, m.average_loss_r) == (D("1.50"), D("-0.75"))
    assert (m.average_win, m.average_loss) == (D("75.00"), D("-37.50"))
    assert m.net_pnl == D(75)


def test_profit_factor_is_none_not_infinite_when_nothing_was_lost() -> None:
    m = compute_metrics([trade(0, "110"), trade(1, "105")], FLAT)
    assert m.profit_factor is None and m.average_loss is None and m.average_loss_r is None
    assert m.win_rate == D(1)


def test_zero_trades_and_a_flat_curve_give_no_false_numbers() -> None:
    m = compute_metrics([], curve([10_000.0] * 30))
    assert m.trades == 0
    assert (m.win_rate, m.profit_factor, m.expectancy_r, m.average_win, m.average_loss) == (None,) * 5
    assert m.sharpe is None and m.sortino is None  # 30 returns of exactly 0: no variation, no downside
    assert (m.max_drawdown, m.total_return, m.exposure) == (0.0, 0.0, 0.0)
    assert m.cagr is None  # 30 days is under the 90-day minimum
    assert m.by_hour == {} and m.by_quality_decile == {}


def test_an_empty_curve_has_no_curve_figures() -> None:
    m = compute_metrics([], curve([]))
    assert (m.final_equity, m.total_return, m.max_drawdown, m.exposure, m.sharpe, m.cagr) == (None,) * 6
    assert m.trading_days == 0


def test_open_trades_are_refused() -> None:
    closed = trade(0, "110")
    t = closed.trade
    still_open = Trade(
        t.trade_id, t.signal_id, t.kind, t.strategy, t.symbol, t.side, t.quantity, t.contract_size,
        t.entry_time, t.entry_price, t.stop, t.target,
    )  # fmt: skip
    opened = BacktestTrade(still_open, closed.setup, None, 0, 1, None, 10, 0)
    with pytest.raises(ValueError, match="closed trades only"):
        compute_metrics([opened], FLAT)


def test_sharpe_and_sortino_on_daily_returns_annualised_by_the_calendar() -> None:
    returns = [0.02] * 10 + [-0.01] * 10
    equity = 10_000.0 * np.cumprod(1 + np.array(returns))
    m = compute_metrics([], curve(list(equity)))
    # mean 0.005; deviations +-0.015, sample variance 20 x 0.015^2 / 19; downside sqrt(10 x 0.01^2 / 20).
    sharpe = 0.005 / math.sqrt(20 * 0.015**2 / 19) * math.sqrt(252)
    sortino = 0.005 / math.sqrt(10 * 0.01**2 / 20) * math.sqrt(252)
    assert m.sharpe == pytest.approx(sharpe, rel=1e-9)  # 5.1576
    assert m.sortino == pytest.approx(sortino, rel=1e-9)  # 11.2250
    assert m.trading_days == 20
    crypto = compute_metrics([], curve(list(equity), per_year=365))
    assert crypto.sharpe == pytest.approx(sharpe * math.sqrt(365 / 252), rel=1e-9)


def test_daily_returns_take_the_last_bar_of_each_trading_date() -> None:
    # Two bars per day: the first of each day is a swing that must not count.
    rng = [0.01 if k % 3 else -0.02 for k in range(MIN_RETURN_DAYS)]
    closes = 10_000.0 * np.cumprod(1 + np.array(rng))
    equity = np.repeat(closes, 2)
    equity[::2] *= 1.5
    days = np.repeat(np.arange(MIN_RETURN_DAYS), 2)
    times = list(np.arange(2 * MIN_RETURN_DAYS) * (DAY_NS // 2))
    m = compute_metrics([], curve(list(equity), days=list(days), interval=Interval.H1, times=times))
    r = np.array(rng)
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252), rel=1e-9)


def test_too_few_days_give_no_ratios() -> None:
    equity = [10_100.0, 10_000.0] * ((MIN_RETURN_DAYS - 1) // 2) + [10_100.0]
    assert len(equity) == MIN_RETURN_DAYS - 1
    m = compute_metrics([], curve(equity))
    assert m.sharpe is None and m.sortino is None


def test_max_drawdown_is_the_largest_fall_from_a_running_peak() -> None:
    m = compute_metrics([], curve([10_000, 11_000, 9_900, 10_500, 8_800, 12_000]))
    assert m.max_drawdown == pytest.approx(0.2)  # 11,000 -> 8,800
    falling = compute_metrics([], curve([9_000.0, 8_000.0]))
    assert falling.max_drawdown == pytest.approx(0.2)  # the initial equity is the first peak


def test_cagr_over_the_calendar_span_and_exposure() -> None:
    # Two daily bars a year apart: span = first open to last close = 365 days; equity doubles.
    times = [0, 364 * DAY_NS]
    m = compute_metrics([], curve([10_000.0, 20_000.0], times=times, in_position=[True, False]))
    assert m.cagr == pytest.approx(2 ** (365.25 / 365) - 1)
    assert m.exposure == pytest.approx(0.5)
    assert m.total_return == pytest.approx(1.0)
    ruined = compute_metrics([], curve([10_000.0, -50.0], times=times))
    assert ruined.cagr == -1.0
    assert ruined.max_drawdown == pytest.approx(1.005)  # lost more than everything: shown, not capped
    short = compute_metrics([], curve([10_000.0, 20_000.0], times=[0, 88 * DAY_NS]))
    assert short.cagr is None  # 89 days


def test_ratios_stop_being_defined_once_equity_has_gone_through_zero() -> None:
    equity = [10_000.0 + 100 * (k % 2) for k in range(30)]
    equity[10] = -50.0
    m = compute_metrics([], curve(equity))
    assert m.sharpe is None and m.sortino is None and m.trading_days == 30


def test_breakdowns_by_hour_weekday_symbol_and_quality_decile() -> None:
    trades = [
        trade(0, "110", hour=9, weekday=0, symbol="AAA", score=85.0),
        trade(1, "95", hour=9, weekday=1, symbol="BBB", score=89.9),
        trade(2, "105", hour=14, weekday=1, symbol="AAA", score=42.0),
        trade(3, "95", hour=14, weekday=4, symbol="AAA"),
    ]
    m = compute_metrics(trades, FLAT)
    assert {h: (g.trades, g.wins, g.win_rate, g.expectancy_r) for h, g in m.by_hour.items()} == {
        9: (2, 1, D("0.5000"), D("0.50")),
        14: (2, 1, D("0.5000"), D("0.00")),
    }
    assert {w: g.trades for w, g in m.by_weekday.items()} == {0: 1, 1: 2, 4: 1}
    assert {s: (g.trades, g.expectancy_r) for s, g in m.by_symbol.items()} == {
        "AAA": (3, D("0.67")),
        "BBB": (1, D("-1.00")),
    }
    # The unscored trade has no decile; 85 and 89.9 share the 80-90 band.
    assert {d: (g.trades, g.wins) for d, g in m.by_quality_decile.items()} == {4: (1, 1), 8: (2, 1)}


def test_quality_deciles_are_fixed_ten_point_bands() -> None:
    assert [quality_decile(s) for s in (0.0, 9.99, 10.0, 55.5, 99.9, 100.0)] == [0, 0, 1, 5, 9, 9]
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        quality_decile(100.5)


def test_trading_days_per_year_follow_the_calendar() -> None:
    assert [trading_days_per_year(c) for c in ("XNSE", "XNYS", "FX", "CRYPTO")] == [252, 252, 260, 365]
    with pytest.raises(ValueError, match="known: CRYPTO, FX, XNSE, XNYS"):
        trading_days_per_year("LSE")


def _half(k0: int, high_wins: int, low_wins: int) -> list[BacktestTrade]:
    """Ten trades scored 85 with `high_wins` wins and ten scored 25 with `low_wins` wins, from hour k0 on."""
    out = []
    for k in range(10):
        out.append(trade(k0 + 2 * k, "110" if k < high_wins else "95", score=85.0))
        out.append(trade(k0 + 2 * k + 1, "110" if k < low_wins else "95", score=25.0))
    return out


def test_calibration_mapping_that_carries_over_beats_the_base_rate_out_of_sample() -> None:
    # Fit (first 20 by entry time): decile 8 wins 8/10, decile 2 wins 2/10, base rate 0.5. Test: the same.
    report = calibration(_half(0, 8, 2) + _half(100, 8, 2))
    assert (report.scored_trades, report.fit_trades, report.test_trades) == (40, 20, 20)
    assert report.base_rate == pytest.approx(0.5)
    # Mapping on the test half: 8 x 0.2^2 + 2 x 0.8^2 + 2 x 0.8^2 + 8 x 0.2^2 = 3.2 over 20 = 0.16.
    assert report.brier_mapping == pytest.approx(0.16)
    assert report.brier_base_rate == pytest.approx(0.25)
    assert report.skill == pytest.approx(0.36)
    assert report.beats_base_rate is True
    assert report.verdict.startswith("the quality-decile mapping beats the base rate out of sample")
    d8 = report.deciles[8]
    assert (d8.trades, d8.wins, d8.win_rate, d8.band) == (20, 16, 0.8, (80, 90))
    assert report.deciles[5].win_rate is None and report.deciles[5].trades == 0


def test_calibration_says_plainly_when_the_mapping_does_not_beat_the_base_rate() -> None:
    # The later half reverses the pattern: the fitted mapping is confidently wrong out of sample.
    report = calibration(_half(0, 8, 2) + _half(100, 2, 8))
    # 2 x 0.2^2 + 8 x 0.8^2 + 8 x 0.8^2 + 2 x 0.2^2 = 10.4 over 20 = 0.52, against 0.25 for the base rate.
    assert report.brier_mapping == pytest.approx(0.52)
    assert report.brier_base_rate == pytest.approx(0.25)
    assert report.beats_base_rate is False
    assert "does NOT beat the base rate out of sample" in report.verdict
    # In sample, over all 40 trades, both deciles won exactly half: no information at all.
    assert report.deciles[8].win_rate == 0.5 and report.deciles[2].win_rate == 0.5


def test_calibration_falls_back_to_the_base_rate_for_thin_deciles() -> None:
    # Fit half: 16 trades in decile 8 (12 wins) and 4 in decile 2 (fewer than 5: mapped to the base rate).
    fit = [trade(k, "110" if k < 12 else "95", score=85.0) for k in range(16)]
    fit += [trade(16 + k, "95", score=25.0) for k in range(4)]
    test = [trade(100 + k, "110" if k % 2 else "95", score=25.0) for k in range(20)]
    report = calibration(fit + test)
    assert report.base_rate == pytest.approx(12 / 20)
    # Every test trade is in decile 2, mapped to 0.6: half wins (0.4^2) and half losses (0.6^2) -> 0.26.
    assert report.brier_mapping == pytest.approx(0.26)
    assert report.brier_base_rate == pytest.approx(0.26)
    assert report.beats_base_rate is False  # equal is not better


def test_calibration_of_a_tiny_sample_is_not_applicable() -> None:
    report = calibration(_half(0, 8, 2))
    assert report.beats_base_rate is None and report.brier_mapping is None and report.skill is None
    assert report.verdict.startswith("n/a: 20 scored closed trades")
    assert calibration([]).verdict.startswith("n/a: 0 scored closed trades")
    unscored = [trade(k, "110") for k in range(50)]
    assert calibration(unscored).scored_trades == 0


def test_equal_daily_returns_have_no_sharpe_however_their_deviation_rounds() -> None:
    steady = np.full(MIN_RETURN_DAYS + 10, 0.001)
    assert 0 < float(np.std(steady, ddof=1)) < 1e-15  # the rounding: it gave a Sharpe of 7e16
    assert sharpe_ratio(steady, 252) is None
    assert sharpe_ratio(np.r_[steady, 0.002], 252) is not None
