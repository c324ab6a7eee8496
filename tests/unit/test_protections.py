"""Protections: each guard blocks new entries at exactly the right trade and lifts at exactly the right time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from engine.domain import Side
from engine.protections import (
    Block,
    BookView,
    Candidate,
    ProtectionConfig,
    ProtectionKind,
    alerts,
    check_entry,
    status,
)
from engine.trading import ExitReason, Trade, TradeKind

D = Decimal
DAY = datetime(2025, 3, 14, 7, 0, tzinfo=UTC)  # session start
NEXT = DAY + timedelta(days=1)
NOON = DAY + timedelta(hours=5)
ENTRY = D(1000)
# Every guard off; each test turns on the one it exercises.
OFF = ProtectionConfig(
    max_open_positions=1000,
    one_position_per_symbol=False,
    max_trades_per_day=None,
    daily_loss_fraction=None,
    max_consecutive_losses=None,
    max_drawdown_fraction=None,
    symbol_cooldown=timedelta(0),
    correlation_threshold=None,
)


def trade(
    trade_id: str,
    *,
    symbol: str = "EURUSD",
    side: Side = Side.LONG,
    entry_at: datetime = NOON,
    kind: TradeKind = TradeKind.PAPER,
    strategy: str = "trend_pullback",
) -> Trade:
    stop = ENTRY - 10 if side is Side.LONG else ENTRY + 10
    target = ENTRY + 20 if side is Side.LONG else ENTRY - 20
    return Trade(
        trade_id=trade_id,
        signal_id=f"sig-{trade_id}",
        kind=kind,
        strategy=strategy,
        symbol=symbol,
        side=side,
        quantity=D(1),
        contract_size=D(1),
        entry_time=entry_at,
        entry_price=ENTRY,
        stop=stop,
        target=target,
    )


def closed(
    trade_id: str,
    pnl: str,
    exit_at: datetime,
    *,
    symbol: str = "EURUSD",
    side: Side = Side.LONG,
    entry_at: datetime | None = None,
    kind: TradeKind = TradeKind.PAPER,
) -> Trade:
    """A closed trade with exactly this net P&L (quantity 1, contract size 1, no fees)."""
    opened = trade(trade_id, symbol=symbol, side=side, entry_at=entry_at or exit_at - timedelta(minutes=30), kind=kind)
    exit_price = ENTRY + D(pnl) * side.sign
    result = opened.closed(exit_at, exit_price, ExitReason.MANUAL)
    assert result.pnl == D(pnl)
    return result


def view(
    *,
    open_trades: Sequence[Trade] = (),
    closed_trades: Sequence[Trade] = (),
    equity: str = "10000",
    peak: str | None = None,
    returns: dict[str, Sequence[float] | np.ndarray] | None = None,
) -> BookView:
    return BookView(
        open_trades=open_trades,
        closed_trades=closed_trades,
        equity=D(equity),
        equity_peak=D(peak if peak is not None else equity),
        day_start=DAY,
        next_session=NEXT,
        returns=returns or {},
    )


def candidate(
    symbol: str = "EURUSD", side: Side = Side.LONG, *, at: datetime = NOON + timedelta(hours=1), hour: int = 13
) -> Candidate:
    return Candidate(symbol=symbol, side=side, strategy="trend_pullback", at=at, local_hour=hour)


def kinds(blocks: list[Block]) -> list[ProtectionKind]:
    return [b.kind for b in blocks]


def test_defaults_allow_an_entry_into_an_empty_book() -> None:
    assert check_entry(ProtectionConfig(), view(), candidate()) == []
    assert status(ProtectionConfig(), view(), NOON) == []
    assert alerts(ProtectionConfig(), view()) == []


# --- max open positions / one per symbol -------------------------------------------------------------------


def test_max_open_positions_blocks_at_the_limit_and_ignores_shadow_trades() -> None:
    config = replace(OFF, max_open_positions=3)
    two = [trade("a", symbol="AAPL"), trade("b", symbol="MSFT")]
    shadow = trade("s", symbol="NVDA", kind=TradeKind.SHADOW)
    assert check_entry(config, view(open_trades=[*two, shadow]), candidate()) == []
    blocks = check_entry(config, view(open_trades=[*two, trade("c", symbol="SPY")]), candidate())
    assert kinds(blocks) == [ProtectionKind.MAX_OPEN_POSITIONS]
    assert blocks[0].reason == "max open positions: 3 open >= limit 3"
    assert blocks[0].until is None
    assert not blocks[0].pauses


def test_one_position_per_symbol_blocks_either_side_and_can_be_turned_off() -> None:
    held = view(open_trades=[trade("t1", symbol="EURUSD", side=Side.SHORT)])
    config = replace(OFF, one_position_per_symbol=True)
    for side in Side:
        blocks = check_entry(config, held, candidate(side=side))
        assert kinds(blocks) == [ProtectionKind.ONE_PER_SYMBOL]
        assert "already holding EURUSD short (trade t1)" in blocks[0].reason
    assert check_entry(config, held, candidate("GBPUSD")) == []
    assert check_entry(OFF, held, candidate()) == []


# --- max trades per day ------------------------------------------------------------------------------------


def test_max_trades_per_day_counts_entries_since_the_day_start_open_or_closed() -> None:
    config = replace(OFF, max_trades_per_day=3)
    yesterday = DAY - timedelta(hours=3)
    old = closed("y", "5", DAY - timedelta(hours=2), entry_at=yesterday)
    entered_before_closed_today = closed("x", "5", DAY + timedelta(hours=1), entry_at=yesterday)
    open_today = trade("o1", symbol="AAPL")
    closed_today = closed("c1", "5", NOON - timedelta(hours=1))
    two = view(open_trades=[open_today], closed_trades=[old, entered_before_closed_today, closed_today])
    assert check_entry(config, two, candidate()) == []
    three = view(open_trades=[open_today], closed_trades=[old, closed_today, closed("c2", "-5", NOON)])
    blocks = check_entry(config, three, candidate())
    assert kinds(blocks) == [ProtectionKind.MAX_TRADES_PER_DAY]
    assert blocks[0].until == NEXT
    assert "3 entered today >= limit 3" in blocks[0].reason
    assert not blocks[0].pauses


# --- daily loss --------------------------------------------------------------------------------------------


def _first_blocking_index(config: ProtectionConfig, trades: list[Trade], kind: ProtectionKind) -> int | None:
    """Index of the trade whose close first sets off `kind` (the book's equity moving with each P&L)."""
    equity = D(10000)
    for i in range(len(trades)):
        book = trades[: i + 1]
        equity_now = equity + sum((t.pnl or D(0) for t in book), D(0))
        blocks = check_entry(config, view(closed_trades=book, equity=str(equity_now), peak="10000"), candidate())
        if kind in kinds(blocks):
            return i
    return None


def test_daily_loss_money_triggers_at_the_trade_that_reaches_the_limit() -> None:
    config = replace(OFF, daily_loss_money=D(300))
    at = [DAY + timedelta(hours=h) for h in range(1, 6)]
    # -100, +50 (-50), -200 (-250), -49.99 (-299.99), -0.01 (-300.00: reaches the limit)
    trades = [
        closed("a", "-100", at[0]),
        closed("b", "50", at[1]),
        closed("c", "-200", at[2]),
        closed("d", "-49.99", at[3]),
        closed("e", "-0.01", at[4]),
    ]
    assert _first_blocking_index(config, trades, ProtectionKind.DAILY_LOSS) == 4
    blocks = check_entry(config, view(closed_trades=trades, equity="9700"), candidate())
    assert kinds(blocks) == [ProtectionKind.DAILY_LOSS]
    block = blocks[0]
    assert block.reason.startswith("daily loss limit: -300.00 today <= -300.00; entries paused until the next session")
    assert block.until == NEXT
    assert block.pauses
    assert not block.alert_only


def test_daily_loss_ignores_yesterdays_losses() -> None:
    config = replace(OFF, daily_loss_money=D(300))
    yesterday = closed("y", "-1000", DAY - timedelta(minutes=1))
    today = closed("t", "-299", NOON)
    assert check_entry(config, view(closed_trades=[yesterday, today], equity="8701", peak="10000"), candidate()) == []
    at_start = closed("s", "-1", DAY)  # exited exactly at the day start: counts for today
    blocks = check_entry(
        config, view(closed_trades=[yesterday, today, at_start], equity="8700", peak="10000"), candidate()
    )
    assert kinds(blocks) == [ProtectionKind.DAILY_LOSS]


def test_daily_loss_fraction_is_of_the_equity_at_the_day_start() -> None:
    config = replace(OFF, daily_loss_fraction=D("0.03"))  # 3% of 10000 at the day start = 300
    at = [DAY + timedelta(hours=h) for h in range(1, 4)]
    trades = [closed("a", "-150", at[0]), closed("b", "-149.99", at[1]), closed("c", "-0.02", at[2])]
    assert _first_blocking_index(config, trades, ProtectionKind.DAILY_LOSS) == 2
    blocks = check_entry(config, view(closed_trades=trades, equity="9699.99", peak="10000"), candidate())
    assert blocks[0].reason.startswith(
        "daily loss limit: -300.01 today <= -300.00 (3.0% of 10000.00 at the day start); entries paused"
    )


def test_daily_loss_uses_the_tighter_of_money_and_fraction() -> None:
    both = replace(OFF, daily_loss_money=D(200), daily_loss_fraction=D("0.03"))
    loss = [closed("a", "-200", NOON)]
    assert kinds(check_entry(both, view(closed_trades=loss, equity="9800", peak="10000"), candidate())) == [
        ProtectionKind.DAILY_LOSS
    ]
    loose_money = replace(both, daily_loss_money=D(1000))  # 3% of 10000 = 300 now decides
    assert check_entry(loose_money, view(closed_trades=loss, equity="9800", peak="10000"), candidate()) == []


# --- consecutive losses ------------------------------------------------------------------------------------


def _exits(n: int) -> list[datetime]:
    return [DAY + timedelta(hours=1, minutes=10 * i) for i in range(n)]


def test_the_third_consecutive_loss_pauses_the_second_does_not() -> None:
    config = replace(OFF, max_consecutive_losses=3)
    at = _exits(3)
    losses = [closed("a", "-10", at[0]), closed("b", "-20", at[1]), closed("c", "-5", at[2])]
    assert check_entry(config, view(closed_trades=losses[:2]), candidate()) == []
    # any order in, sorted by exit time inside
    blocks = check_entry(config, view(closed_trades=list(reversed(losses))), candidate())
    assert kinds(blocks) == [ProtectionKind.CONSECUTIVE_LOSSES]
    assert blocks[0].until == NEXT
    assert blocks[0].pauses
    assert "3 losing trades in a row (limit 3, -35.00 in all)" in blocks[0].reason


@pytest.mark.parametrize("reset_pnl", ["0.01", "0"], ids=["win", "break-even"])
def test_a_win_or_break_even_in_between_resets_the_streak(reset_pnl: str) -> None:
    config = replace(OFF, max_consecutive_losses=3)
    at = _exits(5)
    trades = [
        closed("a", "-10", at[0]),
        closed("b", "-10", at[1]),
        closed("w", reset_pnl, at[2]),
        closed("c", "-10", at[3]),
        closed("d", "-10", at[4]),
    ]
    assert check_entry(config, view(closed_trades=trades), candidate()) == []
    third = closed("e", "-10", at[4] + timedelta(minutes=5))
    assert kinds(check_entry(config, view(closed_trades=[*trades, third]), candidate())) == [
        ProtectionKind.CONSECUTIVE_LOSSES
    ]


def test_a_streak_spanning_sessions_pauses_but_a_served_pause_starts_it_over() -> None:
    config = replace(OFF, max_consecutive_losses=3)
    yesterday = [DAY - timedelta(hours=h) for h in (3, 2, 1)]
    two_yesterday = [closed("a", "-10", yesterday[1]), closed("b", "-10", yesterday[2])]
    one_today = closed("c", "-10", NOON)
    assert kinds(check_entry(config, view(closed_trades=[*two_yesterday, one_today]), candidate())) == [
        ProtectionKind.CONSECUTIVE_LOSSES
    ]
    # three losses yesterday paused yesterday; that pause ended at today's session start
    served = [closed("z", "-10", yesterday[0]), *two_yesterday]
    assert check_entry(config, view(closed_trades=served), candidate()) == []
    assert check_entry(config, view(closed_trades=[*served, one_today]), candidate()) == []
    more = [closed("d", "-10", NOON + timedelta(minutes=10)), closed("e", "-10", NOON + timedelta(minutes=20))]
    assert kinds(check_entry(config, view(closed_trades=[*served, one_today, *more]), candidate())) == [
        ProtectionKind.CONSECUTIVE_LOSSES
    ]


# --- drawdown ----------------------------------------------------------------------------------------------


def test_drawdown_alert_only_does_not_block_entries() -> None:
    config = replace(OFF, max_drawdown_fraction=D("0.15"))
    below = view(equity="8501", peak="10000")  # 14.99%
    assert alerts(config, below) == []
    deep = view(equity="8500", peak="10000")  # exactly 15%
    assert check_entry(config, deep, candidate()) == []
    assert status(config, deep, NOON) == []
    [alert] = alerts(config, deep)
    assert alert.kind is ProtectionKind.MAX_DRAWDOWN
    assert alert.alert_only
    assert not alert.pauses
    assert alert.until is None
    assert alert.reason == (
        "max drawdown: 15.0% below the peak 10000.00 (equity 8500.00) >= limit 15.0%; alert only, entries continue"
    )


def test_drawdown_pauses_when_configured() -> None:
    config = replace(OFF, max_drawdown_fraction=D("0.15"), pause_on_drawdown=True)
    assert check_entry(config, view(equity="8501", peak="10000"), candidate()) == []
    deep = view(equity="8400", peak="10000")
    blocks = check_entry(config, deep, candidate())
    assert kinds(blocks) == [ProtectionKind.MAX_DRAWDOWN]
    assert blocks[0].pauses
    assert not blocks[0].alert_only
    assert blocks[0].until is None
    assert "16.0% below the peak" in blocks[0].reason
    assert status(config, deep, NOON) == blocks
    assert alerts(config, deep) == []


# --- symbol cooldown ---------------------------------------------------------------------------------------


def test_cooldown_lifts_exactly_at_exit_plus_cooldown() -> None:
    config = replace(OFF, symbol_cooldown=timedelta(hours=2))
    exit_at = NOON
    book = view(closed_trades=[closed("old", "5", exit_at - timedelta(hours=3)), closed("t", "5", exit_at)])
    just_before = check_entry(config, book, candidate(at=exit_at + timedelta(hours=2) - timedelta(seconds=1)))
    assert kinds(just_before) == [ProtectionKind.SYMBOL_COOLDOWN]
    assert just_before[0].until == exit_at + timedelta(hours=2)
    assert "EURUSD exited at 2025-03-14 12:00 UTC; no new entry on it until 2025-03-14 14:00 UTC" in (
        just_before[0].reason
    )
    assert check_entry(config, book, candidate(at=exit_at + timedelta(hours=2))) == []
    assert check_entry(config, book, candidate("GBPUSD", at=exit_at + timedelta(minutes=1))) == []


# --- correlation -------------------------------------------------------------------------------------------


def _returns(seed: int, n: int = 100) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.001, n)


def test_correlation_blocks_the_same_side_and_allows_the_hedge() -> None:
    config = replace(OFF, correlation_threshold=0.8)
    gbp = _returns(1)
    eur = gbp + _returns(2) * 0.2  # strongly correlated
    expected = float(np.corrcoef(eur, gbp)[0, 1])
    assert expected > 0.9
    book = view(open_trades=[trade("g", symbol="GBPUSD", side=Side.LONG)], returns={"EURUSD": eur, "GBPUSD": gbp})
    blocks = check_entry(config, book, candidate("EURUSD", Side.LONG))
    assert kinds(blocks) == [ProtectionKind.CORRELATION]
    assert blocks[0].reason == (
        f"correlation: EURUSD long correlates {expected:.2f} with the open GBPUSD long (limit 0.80)"
    )
    assert check_entry(config, book, candidate("EURUSD", Side.SHORT)) == []


def test_correlation_allows_uncorrelated_returns() -> None:
    config = replace(OFF, correlation_threshold=0.8)
    eur, gbp = _returns(3), _returns(4)
    assert abs(float(np.corrcoef(eur, gbp)[0, 1])) < 0.5
    book = view(open_trades=[trade("g", symbol="GBPUSD")], returns={"EURUSD": list(eur), "GBPUSD": list(gbp)})
    assert check_entry(config, book, candidate()) == []


def test_correlation_is_skipped_with_too_little_finite_data() -> None:
    config = replace(OFF, correlation_threshold=0.8)
    gbp = _returns(5, 19)
    book = view(open_trades=[trade("g", symbol="GBPUSD")], returns={"EURUSD": gbp * 2, "GBPUSD": gbp})
    assert check_entry(config, book, candidate()) == []  # 19 points, perfectly correlated, skipped
    gbp20 = _returns(5, 20)
    book20 = view(open_trades=[trade("g", symbol="GBPUSD")], returns={"EURUSD": gbp20 * 2, "GBPUSD": gbp20})
    assert kinds(check_entry(config, book20, candidate())) == [ProtectionKind.CORRELATION]
    holed = gbp20 * 2
    holed[3] = np.nan  # 19 finite pairs left
    book_holed = view(open_trades=[trade("g", symbol="GBPUSD")], returns={"EURUSD": holed, "GBPUSD": gbp20})
    assert check_entry(config, book_holed, candidate()) == []
    no_returns = view(open_trades=[trade("g", symbol="GBPUSD")], returns={"EURUSD": gbp20})
    assert check_entry(config, no_returns, candidate()) == []


def test_correlation_looks_only_at_the_end_aligned_lookback() -> None:
    config = replace(OFF, correlation_threshold=0.8, correlation_lookback=50)
    gbp = _returns(6, 150)
    # EURUSD has fewer bars; aligned at the end, eur[i] pairs with gbp[20 + i]
    old_match = np.concatenate([gbp[20:100], _returns(7, 50)])  # correlated long ago, independent lately
    book = view(open_trades=[trade("g", symbol="GBPUSD")], returns={"EURUSD": old_match, "GBPUSD": gbp})
    assert check_entry(config, book, candidate()) == []
    recent_match = np.concatenate([_returns(7, 80), gbp[100:150]])  # independent long ago, identical lately
    book = view(open_trades=[trade("g", symbol="GBPUSD")], returns={"EURUSD": recent_match, "GBPUSD": gbp})
    assert kinds(check_entry(config, book, candidate())) == [ProtectionKind.CORRELATION]
    assert "correlates 1.00" in check_entry(config, book, candidate())[0].reason


# --- blocked hours -----------------------------------------------------------------------------------------


def test_blocked_hours_apply_to_the_strategy_in_exchange_local_hours() -> None:
    config = replace(OFF, blocked_hours={"trend_pullback": (9, 15), "pattern_reversal": (13,)})
    blocks = check_entry(config, view(), candidate(hour=15))
    assert kinds(blocks) == [ProtectionKind.BLOCKED_HOURS]
    assert blocks[0].reason == "blocked hours: trend_pullback takes no entries at 15:00-15:59 exchange time"
    assert check_entry(config, view(), candidate(hour=13)) == []
    assert check_entry(config, view(), candidate(hour=14)) == []


# --- ordering, status ------------------------------------------------------------------------------------


def test_every_block_is_reported_in_a_fixed_order() -> None:
    config = ProtectionConfig(
        max_open_positions=1,
        max_trades_per_day=1,
        daily_loss_money=D(10),
        max_consecutive_losses=1,
        max_drawdown_fraction=D("0.1"),
        pause_on_drawdown=True,
        blocked_hours={"trend_pullback": (13,)},
    )
    gbp = _returns(8)
    book = view(
        open_trades=[trade("o", symbol="GBPUSD"), trade("e", symbol="EURUSD")],
        closed_trades=[closed("l", "-50", NOON, symbol="EURUSD")],
        equity="8000",
        peak="10000",
        returns={"EURUSD": gbp, "GBPUSD": gbp},
    )
    assert kinds(check_entry(config, book, candidate())) == list(ProtectionKind)


def test_status_lists_the_account_level_blocks_until_they_lift() -> None:
    config = replace(
        OFF, max_trades_per_day=2, daily_loss_money=D(100), max_consecutive_losses=2, symbol_cooldown=timedelta(hours=2)
    )
    book = view(
        closed_trades=[closed("a", "-60", NOON), closed("b", "-60", NOON + timedelta(minutes=5))],
        equity="9880",
        peak="10000",
    )
    active = status(config, book, NOON + timedelta(minutes=10))
    assert kinds(active) == [
        ProtectionKind.MAX_TRADES_PER_DAY,
        ProtectionKind.DAILY_LOSS,
        ProtectionKind.CONSECUTIVE_LOSSES,
    ]  # the per-symbol cooldown is not account-level
    assert all(b.until == NEXT for b in active)
    assert status(config, book, NEXT) == []  # a stale view: its daily pauses have lifted
    assert check_entry(config, book, candidate("AAPL", at=NEXT)) == []


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_open_positions": 0}, "max_open_positions must be at least 1, was 0"),
        ({"max_trades_per_day": 0}, "max_trades_per_day must be at least 1, was 0"),
        ({"max_consecutive_losses": -1}, "max_consecutive_losses must be at least 1, was -1"),
        ({"daily_loss_money": D(0)}, "daily_loss_money must be positive when set, was 0"),
        ({"daily_loss_money": 300.0}, "daily_loss_money must be a finite Decimal, was 300.0"),
        ({"daily_loss_fraction": D("1.5")}, "daily_loss_fraction must be within (0, 1) when set, was 1.5"),
        ({"max_drawdown_fraction": D(0)}, "max_drawdown_fraction must be within (0, 1) when set, was 0"),
        ({"symbol_cooldown": timedelta(minutes=-1)}, "symbol_cooldown must not be negative"),
        ({"correlation_threshold": 1.5}, "correlation_threshold must be within (0, 1] when set, was 1.5"),
        ({"correlation_threshold": float("nan")}, "correlation_threshold must be within (0, 1] when set, was nan"),
        ({"correlation_lookback": 10}, "correlation_lookback must be at least 20, was 10"),
        ({"blocked_hours": {"trend_pullback": (24,)}}, "blocked_hours for trend_pullback must be hours within 0..23"),
        ({"blocked_hours": {"": (1,)}}, "blocked_hours strategy names must not be empty"),
    ],
)
def test_config_validation_names_the_rule(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ProtectionConfig(**overrides)  # type: ignore[arg-type]


def test_config_blocked_hours_are_normalised_and_read_only() -> None:
    config = ProtectionConfig(blocked_hours={"s": [15, 9, 9]})  # type: ignore[dict-item]
    assert config.blocked_hours == {"s": (9, 15)}
    with pytest.raises(TypeError):
        config.blocked_hours["t"] = (1,)  # type: ignore[index]


def test_view_candidate_and_block_validation_name_the_rule() -> None:
    done = closed("c", "5", NOON)
    with pytest.raises(ValueError, match="open_trades must hold open trades only, trade c is closed"):
        view(open_trades=[done])
    with pytest.raises(ValueError, match="closed_trades must hold closed trades only, trade o is open"):
        view(closed_trades=[trade("o")])
    with pytest.raises(ValueError, match="equity_peak must be at least the equity, was 9000 < 10000"):
        view(equity="10000", peak="9000")
    with pytest.raises(ValueError, match="next_session must be after day_start"):
        BookView((), (), D(1), D(1), DAY, DAY)
    with pytest.raises(ValueError, match="day_start must be a timezone-aware UTC datetime"):
        BookView((), (), D(1), D(1), DAY.replace(tzinfo=None), NEXT)
    with pytest.raises(ValueError, match="local_hour must be at most 23, was 24"):
        candidate(hour=24)
    with pytest.raises(ValueError, match="candidate time must be a timezone-aware UTC datetime"):
        candidate(at=NOON.replace(tzinfo=None))
    with pytest.raises(ValueError, match="cannot both pause entries and be alert-only"):
        Block(ProtectionKind.MAX_DRAWDOWN, "x", pauses=True, alert_only=True)
