"""The protections see the same blocks on the trimmed closed book (`ClosedFold.recent`) as on the whole book."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.services.book import fold_closed, view_of
from engine.domain import Side
from engine.protections import Candidate, ProtectionConfig, alerts, check_entry, status
from engine.trading import ExitReason, Trade, TradeKind

START = datetime(2025, 3, 3, tzinfo=UTC)
SYMBOLS = ("EURUSD", "GBPUSD", "XAUUSD")
PNL = {"win": Decimal("100.05"), "loss": Decimal("99.90"), "flat": Decimal("100.00")}  # exit prices, entry 100


def closed_trade(k: int, symbol: str, exit_after_minutes: int, outcome: str, held_minutes: int = 30) -> Trade:
    entry = START + timedelta(minutes=exit_after_minutes - held_minutes)
    return Trade(
        trade_id=f"t{k:04d}",
        signal_id=f"t{k:04d}",
        kind=TradeKind.PAPER,
        strategy="trend_pullback",
        symbol=symbol,
        side=Side.LONG,
        quantity=Decimal(1),
        contract_size=Decimal(100),
        entry_time=entry,
        entry_price=Decimal(100),
        stop=Decimal(99),
        target=Decimal(102),
        exit_time=START + timedelta(minutes=exit_after_minutes),
        exit_price=PNL[outcome],
        exit_reason=ExitReason.MANUAL,
    )


histories = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        st.integers(min_value=0, max_value=12 * 24 * 60).map(lambda m: m - m % 240),  # exits over 12 days: ties
        st.sampled_from(["win", "loss", "loss", "loss", "flat"]),
        st.integers(min_value=1, max_value=600),  # held: the loss-streak order breaks exit ties by entry time
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(
    history=histories,
    now_minutes=st.integers(min_value=0, max_value=13 * 24 * 60),
    cooldown_hours=st.integers(min_value=0, max_value=72),
    streak=st.integers(min_value=1, max_value=5),
    symbol=st.sampled_from(SYMBOLS),
)
def test_the_recent_book_blocks_exactly_as_the_whole_book(
    history: list[tuple[str, int, str, int]], now_minutes: int, cooldown_hours: int, streak: int, symbol: str
) -> None:
    now = START + timedelta(minutes=now_minutes)
    trades = [
        closed_trade(k, s, m, o, h) for k, (s, m, o, h) in enumerate(history) if START + timedelta(minutes=m) <= now
    ]
    trades.sort(key=lambda t: (t.exit_time, t.trade_id))  # the store's order
    cooldown = timedelta(hours=cooldown_hours)
    config = ProtectionConfig(
        max_consecutive_losses=streak,
        symbol_cooldown=cooldown,
        max_trades_per_day=4,
        daily_loss_money=Decimal(15),
        daily_loss_fraction=None,
    )
    fold = fold_closed(trades, Decimal(1000))
    whole = view_of(fold, [], now, timezone="America/New_York", rollover_hour=17)
    recent = view_of(fold, [], now, timezone="America/New_York", rollover_hour=17, reach=cooldown)
    assert set(recent.closed_trades) <= set(whole.closed_trades)
    candidate = Candidate(symbol, Side.LONG, "trend_pullback", now, 10)
    assert check_entry(config, recent, candidate) == check_entry(config, whole, candidate)
    assert status(config, recent, now) == status(config, whole, now)
    assert alerts(config, recent) == alerts(config, whole)


def test_a_losing_run_that_began_days_ago_still_pauses() -> None:
    # Three losses in a row, the first four days before the other two: the run pauses entries today.
    trades = [closed_trade(0, "EURUSD", 0, "win"), closed_trade(1, "EURUSD", 60, "loss")]
    trades += [closed_trade(2, "GBPUSD", 4 * 1440 + 60, "loss"), closed_trade(3, "XAUUSD", 4 * 1440 + 120, "loss")]
    now = START + timedelta(days=4, hours=3)
    fold = fold_closed(trades, Decimal(100000))
    recent = view_of(fold, [], now, timezone="America/New_York", rollover_hour=17, reach=timedelta(hours=2))
    config = ProtectionConfig(max_consecutive_losses=3)
    [block] = status(config, recent, now)
    assert block.reason.startswith("consecutive losses: 3 losing trades in a row")
    assert [t.trade_id for t in recent.closed_trades] == ["t0000", "t0001", "t0002", "t0003"]


def test_a_loss_tied_with_the_last_win_but_entered_later_stays_in_the_run() -> None:
    # t0001 lost and t0002 won, both exiting at 01:00; t0001 entered later, so the streak order (exit, entry) puts
    # the win first and the loss starts the run that two more losses today complete.
    trades = [closed_trade(1, "EURUSD", 60, "loss", held_minutes=10), closed_trade(2, "GBPUSD", 60, "win", 50)]
    trades += [closed_trade(3, "XAUUSD", 4 * 1440 + 60, "loss"), closed_trade(4, "EURUSD", 4 * 1440 + 120, "loss")]
    now = START + timedelta(days=4, hours=3)
    recent = view_of(
        fold_closed(trades, Decimal(100000)), [], now, timezone="America/New_York", rollover_hour=17, reach=timedelta(0)
    )
    [block] = status(ProtectionConfig(max_consecutive_losses=3), recent, now)
    assert block.reason.startswith("consecutive losses: 3 losing trades in a row")


def test_a_long_history_is_trimmed_to_the_days_the_protections_look_at() -> None:
    trades = [closed_trade(k, SYMBOLS[k % 3], 60 * k, "win" if k % 2 else "loss") for k in range(24 * 12)]
    fold = fold_closed(trades, Decimal(1000))
    now = START + timedelta(days=12)
    recent = view_of(fold, [], now, timezone="America/New_York", rollover_hour=17, reach=timedelta(hours=2))
    assert 24 <= len(recent.closed_trades) <= 3 * 24 and recent.equity == fold.equity


@settings(max_examples=300, deadline=None)
@given(history=histories, cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=6))
def test_a_fold_extended_batch_by_batch_is_the_whole_books_fold(
    history: list[tuple[str, int, str, int]], cuts: list[int]
) -> None:
    """Closes arrive in batches in any exit order (ties at one bar's close, a close reconciled late): each extended
    fold equals folding every trade so far from the start, with the values carried after each trade."""
    trades = [closed_trade(k, s, m, o, h) for k, (s, m, o, h) in enumerate(history)]
    bounds = sorted({0, len(trades), *(c for c in cuts if c < len(trades))})
    fold = fold_closed([], Decimal(1000))
    for lo, hi in pairwise(bounds):
        fold = fold.extended(trades[lo:hi], Decimal(1000), None)
        whole = fold_closed(sorted(trades[:hi], key=lambda t: (t.exit_time, t.trade_id)), Decimal(1000))
        assert (fold.trades, fold.exits, fold.equity, fold.peak, fold.last_gain, fold.carried) == (
            whole.trades,
            whole.exits,
            whole.equity,
            whole.peak,
            whole.last_gain,
            whole.carried,
        )
    assert len(fold.carried) == len(trades)


@settings(max_examples=200, deadline=None)
@given(history=histories, cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=6))
def test_a_fold_keeps_what_it_holds_when_later_folds_are_made_from_it(
    history: list[tuple[str, int, str, int]], cuts: list[int]
) -> None:
    """The usual close appends to lists the earlier fold shares: the earlier fold still holds what it held, and a
    second fold made from it (another branch) holds its own trades, not the first branch's."""
    trades = [closed_trade(k, s, m, o, h) for k, (s, m, o, h) in enumerate(history)]
    bounds = sorted({0, len(trades), *(c for c in cuts if c < len(trades))})
    folds = [fold_closed([], Decimal(1000))]
    for lo, hi in pairwise(bounds):
        folds.append(folds[-1].extended(trades[lo:hi], Decimal(1000), None))
    held = [(f.trades, f.exits, f.carried, f.equity, f.peak, f.last_gain) for f in folds]
    for k, fold in enumerate(folds):  # each earlier fold extended again, as if another close had come instead
        other = closed_trade(1000 + k, "GBPUSD", 10**6, "loss")  # after every other close
        branch = fold.extended([other], Decimal(1000), None)
        assert branch.trades == (*fold.trades, other) and branch.equity == fold.equity + (other.pnl or 0)
        whole = fold_closed(sorted((*fold.trades, other), key=lambda t: (t.exit_time, t.trade_id)), Decimal(1000))
        assert (branch.carried, branch.peak, branch.last_gain) == (whole.carried, whole.peak, whole.last_gain)
    assert [(f.trades, f.exits, f.carried, f.equity, f.peak, f.last_gain) for f in folds] == held
    assert all(t.trade_id in folds[-1].account_pnl for t in trades)
