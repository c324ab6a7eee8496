"""Performance statistics over closed trades, checked against numbers worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from engine.domain import Side
from engine.performance import PerformanceSummary, TradeStats, format_ratio, summarize
from engine.trading import ExitReason, Trade, TradeKind

D = Decimal
T0 = datetime(2025, 6, 2, 14, 0, tzinfo=UTC)


def trade(
    n: int,
    strategy: str,
    symbol: str,
    side: Side,
    quantity: str,
    entry: str,
    stop: str,
    exit_price: str,
    fees: str = "0",
) -> Trade:
    target = D(entry) + side.sign * 10 * abs(D(entry) - D(stop))
    opened = Trade(
        trade_id=f"t{n}",
        signal_id=f"s{n}",
        kind=TradeKind.PAPER,
        strategy=strategy,
        symbol=symbol,
        side=side,
        quantity=D(quantity),
        contract_size=D(1),
        entry_time=T0 + timedelta(hours=n),
        entry_price=D(entry),
        stop=D(stop),
        target=target,
        entry_fees=D(fees),
    )
    return opened.closed(T0 + timedelta(hours=n, minutes=30), D(exit_price), ExitReason.MANUAL, D(fees))


TP, DO = "trend_pullback", "defining_order"
L, S = Side.LONG, Side.SHORT
# Risk of the AAPL trades: 2 x 10 = 20 USD; of the RELIANCE shorts: 10 x 5 = 50 INR.
T1 = trade(1, TP, "AAPL", L, "10", "100", "98", "104")  # +40 -> +2.00R win
T2 = trade(2, TP, "AAPL", L, "10", "100", "98", "98")  # -20 -> -1.00R loss
T3 = trade(3, DO, "RELIANCE", S, "5", "1300", "1310", "1299.8")  # +1.0 -> +0.02R breakeven
T4 = trade(4, DO, "RELIANCE", S, "5", "1300", "1310", "1285", fees="1")  # 75 - 2 = 73 -> +1.46R win
T5 = trade(5, TP, "AAPL", L, "10", "100", "98", "99.5", fees="0.5")  # -5 - 1 = -6 -> -0.30R loss
T6 = trade(6, TP, "AAPL", L, "10", "100", "98", "99.9")  # -1 -> -0.05R: on the band's edge, a loss
ALL = [T4, T2, T6, T1, T5, T3]  # deliberately out of order


def test_the_hand_built_trades_have_the_intended_r() -> None:
    assert [t.pnl_r for t in (T1, T2, T3, T4, T5, T6)] == [D(x) for x in ("2", "-1", "0.02", "1.46", "-0.3", "-0.05")]


def test_overall_summary() -> None:
    s = summarize(ALL)
    assert (s.trades, s.wins, s.losses, s.breakevens) == (6, 2, 3, 1)
    assert s.win_rate == D("0.3333")  # 2 / 6
    # Positive R 2.00 + 0.02 + 1.46 = 3.48 over negative R 1.00 + 0.30 + 0.05 = 1.35 -> 2.5777.. -> 2.58
    assert s.profit_factor == D("2.58")
    assert s.total_r == D("2.13")
    assert s.expectancy_r == D("0.36")  # 2.13 / 6 = 0.355 -> half-even to 0.36
    assert s.average_win_r == D("1.73")  # (2.00 + 1.46) / 2
    assert s.average_loss_r == D("-0.45")  # (-1.00 - 0.30 - 0.05) / 3
    assert s.net_pnl_by_symbol == {"AAPL": D("13.0"), "RELIANCE": D("74.0")}  # 40 - 20 - 6 - 1; 1.0 + 73
    assert list(s.net_pnl_by_symbol) == ["AAPL", "RELIANCE"]
    assert s.net_pnl == D("87.0")  # quote currency units, summed
    assert s.best is T1 and s.worst is T2
    assert not s.is_empty


def test_by_strategy_breakdown() -> None:
    s = summarize(ALL)
    assert list(s.by_strategy) == [DO, TP]
    tp, do = s.by_strategy[TP], s.by_strategy[DO]
    assert (tp.trades, tp.wins, tp.losses, tp.breakevens) == (4, 1, 3, 0)
    assert tp.win_rate == D("0.2500")
    assert tp.profit_factor == D("1.48")  # 2.00 / 1.35 = 1.4814..
    assert tp.expectancy_r == D("0.16")  # 0.65 / 4 = 0.1625
    assert (tp.average_win_r, tp.average_loss_r) == (D("2.00"), D("-0.45"))
    assert tp.net_pnl_by_symbol == {"AAPL": D("13.0")} and tp.net_pnl == D("13.0")
    assert (do.trades, do.wins, do.losses, do.breakevens) == (2, 1, 0, 1)
    assert do.win_rate == D("0.5000")
    assert do.profit_factor is None  # nothing lost: undefined, never infinity
    assert format_ratio(do.profit_factor) == "n/a"
    assert do.expectancy_r == D("0.74")  # 1.48 / 2
    assert (do.average_win_r, do.average_loss_r) == (D("1.46"), None)
    assert do.best is T4 and do.worst is T3
    assert do.by_strategy == {}


def test_zero_trades_say_so_without_dividing_by_zero() -> None:
    s = summarize([])
    assert s.is_empty
    assert (s.trades, s.wins, s.losses, s.breakevens) == (0, 0, 0, 0)
    assert (s.win_rate, s.profit_factor, s.expectancy_r, s.average_win_r, s.average_loss_r) == (None,) * 5
    assert s.total_r == 0 and s.net_pnl == 0 and s.net_pnl_by_symbol == {} and s.by_strategy == {}
    assert s.best is None and s.worst is None


def test_only_losses_give_a_profit_factor_of_zero() -> None:
    s = summarize([T2, T5])
    assert s.profit_factor == D("0.00")
    assert format_ratio(s.profit_factor) == "0.00"
    assert s.win_rate == D("0.0000")


def test_ties_for_best_go_to_the_earlier_exit() -> None:
    twin = trade(7, TP, "AAPL", L, "10", "100", "98", "104")  # also +2.00R, exits later
    assert summarize([twin, T1]).best is T1


def test_open_trades_are_refused() -> None:
    still_open = Trade("t9", "s9", TradeKind.PAPER, TP, "AAPL", L, D(1), D(1), T0, D(100), D(98), D(110))
    with pytest.raises(ValueError, match="t9 is still open"):
        summarize([T1, still_open])


def test_counts_must_add_up() -> None:
    with pytest.raises(ValueError, match="wins \\+ losses \\+ breakevens must equal trades"):
        PerformanceSummary(3, 1, 1, 0, None, None, None, None, None, D(0), D(0), {}, None, None)


def test_one_statistics_type_measures_exact_and_float_r_alike() -> None:
    rs = ["2", "-1", "0.02", "-0.04", "1", "-0.05", "0.05"]
    exact = TradeStats.of([Decimal(r) for r in rs])
    fast = TradeStats.of([float(r) for r in rs])
    assert (exact.trades, exact.wins, exact.losses, exact.breakevens) == (7, 3, 2, 2)
    assert (fast.trades, fast.wins, fast.losses, fast.breakevens) == (7, 3, 2, 2)
    assert exact.win_rate == Decimal(3) / 7 and isinstance(exact.win_rate, Decimal)
    assert exact.profit_factor == Decimal("3.07") / Decimal("1.09")
    assert exact.total_r == Decimal("1.98")
    for name in ("win_rate", "profit_factor", "expectancy_r", "average_win_r", "average_loss_r", "sharpe"):
        assert float(getattr(exact, name)) == pytest.approx(getattr(fast, name)), name


def test_statistics_refuse_a_mix_of_exact_and_float_r() -> None:
    with pytest.raises(ValueError, match="all Decimal or all float"):
        TradeStats.of([Decimal("1"), -1.0])  # type: ignore[list-item]
